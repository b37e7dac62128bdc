"""The bus benchmark's command line: ``python -m bench.bus`` from the repository root (see
the package's docstring)."""

from __future__ import annotations

import signal
import sys
import time
from multiprocessing import get_context

import click
from rich.console import Console

from bench.bus.cell import DEFAULT_SIZES, PACED_FPS, SYSTEMS, Cell, err
from bench.bus.iceoryx import available as iceoryx_available
from bench.bus.peers import issue11_targets, measure_floor
from bench.bus.report import (
    Row,
    analyse,
    markdown_table,
    print_notes,
    print_producer_floors,
    print_targets,
    rich_table,
    targets,
)
from bench.bus.run import FramebusEnvironment, producer_floors, run_cell
from bench.common import parse_sizes, parse_systems


def _subs(ctx, param, value: str) -> list[int]:
    try:
        counts = [int(n) for n in value.split(",")]
        if all(n > 0 for n in counts):
            return counts
    except ValueError:
        pass
    raise click.BadParameter(f"expected positive counts such as 1,4, got {value!r}")


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--seconds", type=click.FloatRange(min=0.5), default=3.0, show_default=True,
              help="Length of each phase (paced, then flat out) of every cell.")
@click.option("--sizes", default=DEFAULT_SIZES, show_default=True, callback=parse_sizes,
              help="Frame sizes, WIDTHxHEIGHT, comma-separated.")
@click.option("--subs", default="1,4", show_default=True, callback=_subs,
              help="Subscriber counts, comma-separated.")
@click.option("--systems", default=",".join(SYSTEMS), show_default=True,
              callback=parse_systems(SYSTEMS),
              help="Systems to compare, comma-separated.")
@click.option("--markdown", is_flag=True, help="Also print the table as Markdown.")
def main(seconds: float, sizes: list[tuple[int, int]], subs: list[int], systems: list[str],
         markdown: bool) -> None:
    """Frames from one producer to N local subscribers: framebus, iceoryx2, raw pyzmq,
    imagezmq; and the floor, a bare semaphore wake-up between two processes."""
    # SIGTERM unwinds like Ctrl-C, so the cleanup below runs.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    env = FramebusEnvironment()
    try:
        floors = {}
        if "framebus" in systems:
            env.start_broker()
            err.print("measuring the producer's floors (np.copyto, publish) ...", highlight=False)
            floors = {f"{w}x{h}": producer_floors(env, w, h, max(0.3, seconds / 6))
                      for w, h in sizes}
        err.print("measuring the floor (a POSIX semaphore wake-up, paced) ...", highlight=False)
        floor = measure_floor(seconds)
        rows = run_all(env, seconds, sizes, subs, systems)
    except KeyboardInterrupt:
        err.print("\n[red]interrupted[/]: children stopped, rings and sockets removed")
        sys.exit(130)
    finally:
        env.close()
    # A pipe gets the table at full width too, not squeezed into 80 columns.
    out = Console(width=None if sys.stdout.isatty() else 170)
    out.print(rich_table(rows, seconds))
    if markdown:
        out.print()
        out.print(markdown_table(rows), markup=False, highlight=False, soft_wrap=True)
    print_targets(out, targets(rows))
    out.print(f"\nThe floor, a bare POSIX semaphore wake-up between two processes at "
              f"{PACED_FPS:g} fps: " + (f"p50 {floor[0]:.3f} ms, p99 {floor[1]:.3f} ms"
                                         if floor else "not measured"), highlight=False)
    print_targets(out, issue11_targets(rows, floor), "Issue 11 §1 targets")
    if floors:
        print_producer_floors(out, rows, floors)
    print_notes(out, rows, env.leftovers)


def run_all(env: FramebusEnvironment, seconds: float, sizes: list[tuple[int, int]],
            subs: list[int], systems: list[str]) -> list[Row]:
    """Every cell, one after the other, with progress on stderr."""
    mp = get_context("spawn")
    plan = [(w, h, n, system) for w, h in sizes for n in subs for system in systems]
    rows = []
    started = time.monotonic()
    for i, (w, h, n, system) in enumerate(plan, 1):
        cell = Cell(system, w, h, n, seconds, env.stream_name(system, f"{w}x{h}", n),
                    env.address)
        err.print(f"[{i:2}/{len(plan)}] {cell} ...", end="", highlight=False)
        t0 = time.monotonic()
        why_not = iceoryx_available() if system == "iceoryx2" else None
        if why_not:
            rows.append(Row(cell, error=why_not))
            err.print(f" [red]cannot run[/]: {why_not}", highlight=False)
            continue
        try:
            row = analyse(cell, *run_cell(cell, mp))
            err.print(f" {row.fps:,.1f} fps/sub ({time.monotonic() - t0:.1f} s)", highlight=False)
        except RuntimeError as exc:
            row = Row(cell, error=str(exc))
            err.print(f" [red]failed[/]\n{exc}", highlight=False)
        finally:
            if system == "framebus":
                env.sweep(cell.stream)
        rows.append(row)
    err.print(f"all {len(plan)} cells in {time.monotonic() - started:.0f} s", highlight=False)
    return rows


if __name__ == "__main__":
    main()
