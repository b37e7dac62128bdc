"""The web console's bench, issue 13's targets: ``python -m bench.web [--quick]``.

- Latency: a live 1080p25 camera (libx264 zerolatency) draws its frame index into the
  pixels; the page reads it back from the video and compares with the camera's clock.
  Over MSE, glass-to-glass p50 < 500 ms.
- Viewers: 16 browser viewers of one 1080p25 stream add < 5% of a core to the server.
- Page load: the console's page loads in < 1 s with 32 streams.

Each beside its peer where one means something: MJPEG over HTTP of the same stream, what
most web views of a camera do (the server encodes JPEGs from pixels).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable

import click
from rich.console import Console
from rich.table import Table

from bench.common import verdict
from bench.web import measure
from bench.web.rig import Rig, console_available

log = logging.getLogger("bench.web")
LATENCY_MS = 500.0
VIEWERS, VIEWERS_CPU, FPS = 16, 5.0, 25
STREAMS, LOAD_MS = 32, 1000.0


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--quick", is_flag=True, help="Shorter phases (about 1.5 min in all).")
@click.option("--seconds", type=click.FloatRange(min=2.0), default=None,
              help="Length of each measured phase  [default: 15, quick: 6]")
@click.option("--size", default="1920x1080", show_default=True, help="The streams' size.")
@click.option("--players", is_flag=True,
              help="The viewers are the console's player, decoding (16 decoders need more "
                   "cores than 2): by default they read the stream without decoding it.")
@click.option("--skip", multiple=True, type=click.Choice(["latency", "viewers", "load"]),
              help="Leave a target out (repeatable).")
def main(quick: bool, seconds: float | None, size: str, players: bool,
         skip: tuple[str, ...]) -> None:
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
    seconds = seconds or (6.0 if quick else 15.0)
    width, height = (int(n) for n in size.lower().split("x"))
    console = Console(width=150)  # the table whole, also when not on a terminal
    rows: list[list[str]] = []
    rig = Rig()
    started = time.monotonic()
    try:
        rig.start_server()
        rig.launch_browser()
        sections = {
            "latency": (TARGETS["latency"], lambda: latency_rows(rig, seconds, width, height)),
            "viewers": (TARGETS["viewers"].format(size=size),
                        lambda: viewer_rows(rig, seconds, width, height, quick, players)),
            "load": (TARGETS["load"], lambda: load_rows(rig, quick))}
        for key, (target, measured) in sections.items():
            if key not in skip:
                rows += attempt(target, measured)
    finally:
        rig.close()
    table = Table(title="bench.web: issue 13's targets")
    for column in ("target", "framebus (MSE)", "peer: MJPEG over HTTP", "verdict"):
        table.add_column(column)
    for row in rows:
        table.add_row(*row)
    console.print(table)
    console.print(f"{width}x{height}, {seconds:g} s phases, {time.monotonic() - started:.0f} s "
                  f"in all; load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}; "
                  f"server: {'framebus web' if console_available() else 'bench.web.serve'}")


TARGETS = {"latency": f"glass-to-glass p50 < {LATENCY_MS:.0f} ms",
           "viewers": f"{VIEWERS} viewers of {{size}}p25 add < {VIEWERS_CPU:g}% of a core",
           "load": f"page load < {LOAD_MS:.0f} ms with {STREAMS} streams"}


def attempt(target: str, measured: Callable[[], list[list[str]]]) -> list[list[str]]:
    """*measured*'s rows; a measurement that failed is a MISS saying why, and the bench
    goes on to the next (it runs unattended)."""
    try:
        return measured()
    except Exception as exc:
        log.exception("%s: failed", target)
        return [[target, f"failed: {type(exc).__name__}: {str(exc).splitlines()[0][:80]}",
                 "", verdict(False)]]


def latency_rows(rig: Rig, seconds: float, width: int, height: int) -> list[list[str]]:
    mse = measure.latency(rig, "mse", seconds, width, height)
    mjpeg = measure.latency(rig, "mjpeg", seconds, width, height)

    def cell(lat: measure.Latency) -> str:
        return (f"p50 {lat.p50:.0f} ms, p95 {lat.p95:.0f} ms "
                f"({lat.samples.size}/{lat.frames} frames seen)")

    passed = bool(mse.samples.size) and mse.p50 < LATENCY_MS
    return [[TARGETS["latency"], cell(mse), cell(mjpeg), verdict(passed)]]


def viewer_rows(rig: Rig, seconds: float, width: int, height: int, quick: bool,
                players: bool) -> list[list[str]]:
    clip = rig.clip(75 if quick else 250, width, height)
    name = "viewers"
    rig.decoder(clip, name)
    time.sleep(2.0)
    mse = measure.viewers(rig, "mse", VIEWERS, seconds, name, players)
    mjpeg = measure.viewers(rig, "mjpeg", VIEWERS, seconds, name, players)

    def cell(v: measure.Viewers, kind: str) -> str:
        if players:
            got = f"{v.rate:.1f} fps decoded" if kind == "mse" else "images shown"
        else:
            got = f"{v.rate:.1f} fragments/s" if kind == "mse" else f"{v.rate / 1e6:.2f} MB/s"
        return f"+{v.added:.1f}% of a core ({v.idle:.1f}% -> {v.watched:.1f}%), {got} each"

    # The server's work is per fragment sent: viewers that got fewer than the stream's 25 a
    # second (a machine too loaded for the browsers or the decoder) cost less than a full
    # rate would, so the verdict is on the cost scaled to 25 a second, said as such.
    full = mse.added * FPS / mse.rate if 0 < mse.rate < 0.95 * FPS else mse.added
    scaled = "" if full == mse.added else f"; at {FPS} fragments/s: +{full:.1f}%"
    return [[TARGETS["viewers"].format(size=f"{width}x{height}"), cell(mse, "mse") + scaled,
             cell(mjpeg, "mjpeg"), verdict(mse.rate > 0 and full < VIEWERS_CPU)]]


def load_rows(rig: Rig, quick: bool) -> list[list[str]]:
    target = TARGETS["load"]
    if not console_available():
        return [[target, "no console page here (framebus web)", "", verdict(None)]]
    clip = rig.clip(50, 640, 360)
    names = [f"site-{n:02d}" for n in range(STREAMS)]
    for name in names:
        rig.decoder(clip, name)
    time.sleep(8.0 if quick else 12.0)  # 32 decoders started and registered
    load = measure.page_load(rig, names, 3 if quick else 5)
    return [[target, f"load {load.load_ms:.0f} ms, all {STREAMS} listed {load.listed_ms:.0f} ms, "
                     f"the {load.previews} previews on screen {load.previews_ms:.0f} ms after "
                     "scrolling to them",
             "", verdict(load.listed_ms < LOAD_MS)]]


if __name__ == "__main__":
    main()
