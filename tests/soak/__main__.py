"""The soak's command line: ``python -m tests.soak --seconds N --seed S`` from the
repository root (see the package's docstring)."""

from __future__ import annotations

import json
import logging
import signal
import sys
import tempfile
from pathlib import Path

import click
from rich.console import Console
from rich.live import Live

from framebus.testing.netns import netns_available
from framebus.testing.rtsp import rtsp_available

from .report import markdown, print_report, promises, to_json
from .run import soak

console = Console(stderr=True)


@click.command()
@click.option("--seconds", type=click.FloatRange(min=30), default=120, show_default=True,
              help="How long the chaos runs (setup and the final crash come on top).")
@click.option("--seed", type=int, default=1, show_default=True,
              help="Seeds the chaos and the fuzzers: the same seed, the same faults.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), default=None,
              help="Also write the whole report here.")
@click.option("--work", type=click.Path(file_okay=False), default=None,
              help="Where the site's files and logs go (default: a new temporary directory).")
@click.option("--shm-size", default="64m", show_default=True,
              help="The size of the site's own /dev/shm (tmpfs size=).")
@click.option("--markdown", "render", type=click.Path(exists=True, dir_okay=False),
              default=None, help="Run nothing: print the report of an earlier --json as "
                                 "Markdown tables.")
def main(seconds: float, seed: int, json_path: str | None, work: str | None,
         shm_size: str, render: str | None) -> None:
    """Run framebus under faults and garbage for SECONDS; judge it on every promise."""
    if render:
        print(markdown(json.loads(Path(render).read_text())))
        return
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s",
                        datefmt="%H:%M:%S", stream=sys.stderr)
    for ok, why in (netns_available(), rtsp_available()):
        if not ok:
            console.print(f"[red]the soak cannot run here:[/] {why}")
            sys.exit(2)
    work_dir = Path(work) if work else Path(tempfile.mkdtemp(prefix="framebus-soak-"))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    live = Live(console=console, refresh_per_second=2) if console.is_terminal else None
    if live is not None:
        live.start()
    try:
        report = soak(seconds, seed, work_dir, shm_size, live)
    finally:
        if live is not None:
            live.stop()
    held = promises(report)
    print_report(report, held)
    if json_path:
        Path(json_path).write_text(json.dumps(to_json(report, held), indent=1, default=str))
    broken = [p for p, ok, _ in held if not ok]
    console.print(f"logs: {report['logs']}")
    sys.exit(1 if broken else 0)


if __name__ == "__main__":
    main()
