"""The broker benchmark's command line: ``python -m bench.broker`` from the repository root
(see the package's docstring)."""

from __future__ import annotations

import math
import os
import resource
import shutil
import signal
import sys
import tempfile
import time
from multiprocessing import get_context

import click
from click.core import ParameterSource
from rich.console import Console

from bench.broker.report import Row, analyse, markdown_table, print_notes, print_targets, rich_table
from bench.broker.run import (
    LIFTED,
    RATE,
    Measured,
    Scale,
    Settings,
    has_max_streams_option,
    run_scale,
)
from framebus.support.children import PARENT_ENV

err = Console(stderr=True)
DEFAULT_STREAMS = "256,800,1600,3200"
QUICK_STREAMS = "256,3200"
QUICK_SECONDS = 3.0
PER_HOST = 32


def _counts(ctx, param, value: str) -> list[int]:
    try:
        counts = [int(n.replace("_", "")) for n in value.split(",")]
        if all(n > 0 for n in counts):
            return counts
    except ValueError:
        pass
    raise click.BadParameter(f"expected positive counts such as 256,3200, got {value!r}")


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--streams", default=DEFAULT_STREAMS, show_default=True,
              help="Streams to register at each scale, comma-separated.")
@click.option("--hosts", type=click.IntRange(min=0), default=0,
              help="Hosts the streams are spread over, at every scale  [default: one per "
                   f"{PER_HOST} streams]")
@click.option("--seconds", type=click.FloatRange(min=1.0), default=10.0, show_default=True,
              help="Length of the steady phase of each scale.")
@click.option("--quick", is_flag=True,
              help=f"{QUICK_SECONDS:g} s phases at {QUICK_STREAMS} streams (unless --streams "
                   "or --seconds say otherwise).")
@click.option("--subscribers", type=click.IntRange(min=1), default=2, show_default=True,
              help="Subscriber processes looking streams up.")
@click.option("--lookup-rate", type=click.FloatRange(min=1.0), default=100.0,
              show_default=True, help="Lookups a second, each subscriber.")
@click.option("--producer-procs", type=click.IntRange(min=1), default=2, show_default=True,
              help="Processes sharing the simulated producers.")
@click.option("--kill", type=click.IntRange(min=0), default=1000, show_default=True,
              help="Producers whose heartbeats stop at once after the steady phase (0: none).")
@click.option("--rate-rows/--no-rate-rows", default=True, show_default=True,
              help="When the broker refuses streams, also run those it took at the heartbeat "
                   "rate of all the streams asked.")
@click.option("--lifted-rows/--no-lifted-rows", default=True, show_default=True,
              help="When the broker refuses streams, also run every stream asked against a "
                   "broker whose cap is lifted (framebus.broker.MAX_STREAMS set in its process).")
@click.option("--markdown", is_flag=True, help="Also print the table as Markdown.")
@click.pass_context
def main(ctx: click.Context, streams: str, hosts: int, seconds: float, quick: bool,
         subscribers: int, lookup_rate: float, producer_procs: int, kill: int, rate_rows: bool,
         lifted_rows: bool, markdown: bool) -> None:
    """The broker under a site's load: N producers heartbeat while M subscribers resolve."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # unwinds: the cleanup runs
    if quick and ctx.get_parameter_source("streams") == ParameterSource.DEFAULT:
        streams = QUICK_STREAMS
    if quick and ctx.get_parameter_source("seconds") == ParameterSource.DEFAULT:
        seconds = QUICK_SECONDS
    counts = _counts(ctx, None, streams)
    settings = Settings(seconds, subscribers, lookup_rate, producer_procs, kill,
                        has_max_streams_option())
    err.print(f"{os.cpu_count()} cores, load average {_load()}; `framebus broker` "
              f"{'takes' if settings.max_streams_option else 'has no'} --max-streams",
              highlight=False)
    rows = run_all(counts, hosts, settings, rate_rows, lifted_rows)
    out = Console(width=None if sys.stdout.isatty() else 260)  # a pipe gets full rows too
    out.print(rich_table(rows, seconds))
    if markdown:
        out.print()
        out.print(markdown_table(rows, seconds), markup=False, highlight=False, soft_wrap=True)
    print_targets(out, rows)
    print_notes(out, rows, os.cpu_count())
    out.print(f"\nload average at the end: {_load()}", highlight=False)


def run_all(counts: list[int], hosts: int, settings: Settings, rate_rows: bool,
            lifted_rows: bool) -> list[Row]:
    """Every scale, one after the other, with progress on stderr; Ctrl-C stops them all."""
    _more_files()  # the broker, started from here, needs one a connection
    directory = tempfile.mkdtemp(prefix="fbbroker-")
    # The broker's sweeps of leftover rings and sockets see a namespace of this run only;
    # every child dies with this process, however it dies.
    os.environ.update({"FRAMEBUS_SHM_PREFIX": f"fbbench{os.getpid()}",
                       "FRAMEBUS_RUNTIME_DIR": directory, PARENT_ENV: str(os.getpid())})
    mp = get_context("spawn")
    rows: list[Row] = []
    started = time.monotonic()
    try:
        for n in counts:
            scale = Scale(n, min(n, hosts or math.ceil(n / PER_HOST)))
            row = _run(scale, settings, mp, directory)
            rows.append(row)
            refused = not row.error and row.m.accepted < n
            if refused and rate_rows and row.m.accepted:
                rows.append(_run(Scale(n, scale.hosts, RATE), settings, mp, directory))
            if refused and lifted_rows:
                rows.append(_run(Scale(n, scale.hosts, LIFTED), settings, mp, directory))
    except KeyboardInterrupt:
        err.print("\n[red]interrupted[/]: the broker and every load process stopped")
        sys.exit(130)
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    err.print(f"all in {time.monotonic() - started:.0f} s", highlight=False)
    return rows


def _run(scale: Scale, settings: Settings, mp, directory: str) -> Row:
    err.print(f"{scale} ...", end="", highlight=False)
    t0 = time.monotonic()
    try:
        row = analyse(run_scale(scale, settings, mp, directory))
    except RuntimeError as exc:
        err.print(f" [red]failed[/]\n{exc}", highlight=False)
        return analyse(Measured(scale), error=str(exc))
    err.print(f" {row.m.accepted:,} registered, {row.answered:,.0f} hb/s answered, "
              f"lookup p99 {row.lookup_ms[1] if row.lookup_ms else math.nan:.2f} ms, "
              f"load {_load()} ({time.monotonic() - t0:.0f} s)", highlight=False)
    return row


def _more_files() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


if __name__ == "__main__":
    main()
