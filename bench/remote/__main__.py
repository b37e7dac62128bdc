"""The remote benchmark's command line: ``python -m bench.remote`` from the repository root
(see the package's docstring)."""

from __future__ import annotations

import os
import sys
import time
from multiprocessing import get_context

import click
from click.core import ParameterSource
from rich.console import Console

from bench.common import free_port, parse_sizes, parse_systems, print_section
from bench.remote.cell import DEFAULT_SIZES, FOUR, SHM_ALONE, SHM_LOADED, SOLO, SYSTEMS, Cell, err
from bench.remote.children import exit_on_sigterm
from bench.remote.costs import path_costs, print_costs
from bench.remote.packets import PathFigures
from bench.remote.packets import measure as measure_packets
from bench.remote.packets import report as packet_report
from bench.remote.report import (
    Row,
    analyse,
    fps_text,
    markdown_table,
    print_notes,
    print_targets,
    rich_table,
    targets,
)
from bench.remote.run import Environment, run_cell


def plan(env: Environment, seconds: float, sizes: list[tuple[int, int]],
         systems: list[str], flat_fps: float = 0.0) -> list[Cell]:
    cells = []
    for w, h in sizes:
        for system in systems:
            scenarios = (SHM_ALONE, SHM_LOADED) if system == "local" else (SOLO, FOUR)
            for consumers in scenarios:
                ports = tuple(free_port() for _ in consumers) if system == "netgear" else ()
                cells.append(Cell("framebus-raw" if system == "local" else system, w, h,
                                  consumers, seconds, env.stream_name(system), env.address,
                                  ports, flat_fps))
    return cells


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--seconds", type=click.FloatRange(min=1.0), default=4.0, show_default=True,
              help="Length of each phase (paced, then flat out) of every cell.")
@click.option("--sizes", default=DEFAULT_SIZES, show_default=True, callback=parse_sizes,
              help="Frame sizes, WIDTHxHEIGHT, comma-separated.")
@click.option("--systems", default=",".join(SYSTEMS), show_default=True,
              callback=parse_systems(SYSTEMS),
              help="Systems to compare, comma-separated ('local': framebus's shm subscriber "
                   "alone and beside 4 remote readers).")
@click.option("--markdown", is_flag=True, help="Also print the table as Markdown.")
@click.option("--packets/--no-packets", default=True, show_default=True,
              help="Also the packet path: a 1080p25 H.264 decoder read as raw pixels, then "
                   "as packets the reader decodes.")
@click.option("--flat-fps", type=click.FloatRange(min=0), default=0.0, show_default=True,
              help="Cap the flat-out phase's producer at this rate, for every system alike "
                   "(0: as fast as it can): what each path carries from a producer that is "
                   "fast but does not also spin a core.")
@click.option("--quick", is_flag=True,
              help="2 s phases at 1920x1080 only (unless --seconds or --sizes say otherwise).")
@click.pass_context
def main(ctx: click.Context, seconds: float, sizes: list[tuple[int, int]], systems: list[str],
         markdown: bool, packets: bool, flat_fps: float, quick: bool) -> None:
    """Frames to consumers over loopback TCP: framebus's relay (raw, JPEG, packets), imagezmq,
    Zenoh, NetGear."""
    exit_on_sigterm(143)
    if quick and ctx.get_parameter_source("seconds") == ParameterSource.DEFAULT:
        seconds = 2.0
    if quick and ctx.get_parameter_source("sizes") == ParameterSource.DEFAULT:
        sizes = [(1920, 1080)]
    packet_figures: list[PathFigures] = []
    load_start = os.getloadavg()[0]
    err.print(f"{os.cpu_count()} cores, 1-minute load {load_start:.2f}", highlight=False)
    mp = get_context("spawn")
    env = Environment()
    costs: dict[str, dict[str, float]] = {}
    try:
        if any(s.startswith("framebus") or s == "local" for s in systems):
            err.print("measuring the remote path's pieces ...", highlight=False)
            costs = {f"{w}x{h}": path_costs(w, h, max(0.4, seconds / 8), mp) for w, h in sizes}
            env.start_broker()
            env.ensure_relay()
        elif "imagezmq" in systems or "netgear" in systems:
            env.start_broker()  # unused by them, but cheap, and keeps one code path
        rows = run_all(env, plan(env, seconds, sizes, systems, flat_fps), mp)
        if packets and any(s.startswith("framebus") for s in systems):
            err.print("the packet path: raw pixels, then packets decoded by the reader ...",
                      highlight=False)
            packet_figures = measure_packets(env, max(2.0, seconds))
    except KeyboardInterrupt:
        err.print("\n[red]interrupted[/]: children, broker and relay stopped, rings removed")
        sys.exit(130)
    finally:
        env.close()
    out = Console(width=None if sys.stdout.isatty() else 230)  # a pipe gets full rows too
    out.print(rich_table(rows, seconds, sizes, flat_fps))
    if markdown:
        out.print()
        out.print(markdown_table(rows, sizes, flat_fps), markup=False, highlight=False,
                  soft_wrap=True)
    print_targets(out, *targets(rows))
    if packet_figures:
        print_section(out, "Packets for remote readers (1080p25 H.264, one reader, loopback)",
                      packet_report(packet_figures))
    if costs:
        print_costs(out, costs)
    print_notes(out, rows, env, (load_start, os.getloadavg()[0]))


def run_all(env: Environment, cells: list[Cell], mp) -> list[Row]:
    """Every cell, one after the other, with progress on stderr."""
    rows = []
    started = time.monotonic()
    for i, cell in enumerate(cells, 1):
        err.print(f"[{i:2}/{len(cells)}] {cell} ...", highlight=False)
        t0 = time.monotonic()
        try:
            if cell.framebus:
                env.ensure_relay()
            row = analyse(cell, *run_cell(cell, env, mp))
            err.print(f"    {fps_text(row.fps('paced'))} fps paced, "
                      f"{fps_text(row.fps('flat'))} flat out per consumer "
                      f"({time.monotonic() - t0:.1f} s)", highlight=False)
        except RuntimeError as exc:
            row = Row(cell, error=str(exc))
            err.print(f"    [red]failed[/]\n{exc}", highlight=False)
        finally:
            env.sweep()
        rows.append(row)
    err.print(f"all {len(cells)} cells in {time.monotonic() - started:.0f} s", highlight=False)
    return rows


if __name__ == "__main__":
    main()
