"""The decode benchmark's command line: ``python -m bench.decode`` from the repository root
(see the package's docstring)."""

from __future__ import annotations

import os
import shlex
import signal
import sys
import time
from multiprocessing import get_context
from pathlib import Path

import click

from bench.decode.capacity import LevelResult, run_all_capacity
from bench.decode.crew import Bench
from bench.decode.report import report
from bench.decode.settings import FORMATS, err
from bench.decode.throughput import run_throughput, throughput_systems
from bench.decode.video import encode_video


def _formats(ctx, param, value: str) -> list[str]:
    chosen = [f.strip() for f in value.split(",") if f.strip()]
    unknown = [f for f in chosen if f not in FORMATS]
    if unknown or not chosen:
        raise click.BadParameter(f"choose among {', '.join(FORMATS)}, got {value!r}")
    return chosen


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--seconds", type=click.FloatRange(min=1.0), default=8.0, show_default=True,
              help="Measurement window of every capacity level (after warm-up).")
@click.option("--video-seconds", type=click.FloatRange(min=2.0), default=10.0,
              show_default=True, help="Length of the test video (25 fps).")
@click.option("--runs", type=click.IntRange(min=1), default=3, show_default=True,
              help="Throughput runs per system (the median is reported).")
@click.option("--max-streams", type=click.IntRange(min=2), default=10, show_default=True,
              help="Capacity: the largest N tried.")
@click.option("--formats", default=",".join(FORMATS), show_default=True, callback=_formats,
              help="framebus pixel formats for throughput and capacity.")
@click.option("--skip-capacity", is_flag=True, help="Throughput only.")
@click.option("--threads0/--no-threads0", default=True, show_default=True,
              help="Capacity: also run the largest passing bgr24 level with --threads 0.")
@click.option("--markdown", is_flag=True, help="Also print the tables as Markdown.")
def main(seconds: float, video_seconds: float, runs: int, max_streams: int, formats: list[str],
         skip_capacity: bool, threads0: bool, markdown: bool) -> None:
    """Decoding 1080p H.264: plain PyAV and OpenCV against `framebus decode`, and how many
    real-time streams framebus sustains."""
    # SIGTERM unwinds like Ctrl-C, so the cleanup below runs.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    command = _command()
    load_start, started = os.getloadavg(), time.monotonic()
    bench = Bench()
    capacity: dict[tuple[str, int], list[LevelResult]] = {}
    try:
        bench.start_broker()
        mp = get_context("spawn")
        err.print(f"encoding the test video ({video_seconds:g} s) ...", highlight=False)
        video = encode_video(bench.tmp / "test1080.mp4", video_seconds)
        err.print(f"  {video.describe()} ({time.monotonic() - started:.0f} s)", highlight=False)
        err.print(f"throughput, {runs} runs per system, interleaved ...", highlight=False)
        rows = run_throughput(bench, mp, video, throughput_systems(formats), runs)
        if not skip_capacity:
            capacity = run_all_capacity(bench, mp, video, formats, max_streams, seconds,
                                        threads0)
    except KeyboardInterrupt:
        err.print("\n[red]interrupted[/]: children stopped, rings and temp files removed")
        sys.exit(130)
    finally:
        bench.close()
    elapsed = time.monotonic() - started
    report(command, video, rows, capacity, seconds, max_streams, markdown,
           bench.leftovers, (load_start, os.getloadavg()), elapsed)


def _command() -> str:
    python = Path(sys.executable)
    try:
        python = python.relative_to(Path.cwd())
    except ValueError:
        pass
    return shlex.join([str(python), *sys.argv])



if __name__ == "__main__":
    main()
