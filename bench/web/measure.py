"""The web bench's three measurements, each on a Rig with its server and browser started."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from bench.web.pages import mjpeg_page, player_page, reader_page
from bench.web.rig import Rig
from framebus.testing.camera import Camera

log = logging.getLogger("bench.web")

#: Seconds a view runs before its samples count (first GOP, the jump to the live edge).
SETTLE = 3.0


@dataclass
class Latency:
    """Glass to glass, ms: camera drew the frame -> the page presents it."""

    samples: np.ndarray
    frames: int  # frames the camera made meanwhile

    @property
    def p50(self) -> float:
        return float(np.percentile(self.samples, 50)) if self.samples.size else float("nan")

    @property
    def p95(self) -> float:
        return float(np.percentile(self.samples, 95)) if self.samples.size else float("nan")


def latency(rig: Rig, kind: str, seconds: float, width: int, height: int) -> Latency:
    """A live camera (libx264 zerolatency, packets and pixels) watched over *kind* ("mse" or
    "mjpeg"); each frame index the page reads back, against when the camera drew it."""
    name = f"latency-{kind}"
    with Camera(name, width, height, fps=25, gop=25, pixels=True,
                broker=rig.broker_address) as camera:
        time.sleep(1.0)  # registered, a key frame in the ring
        html = player_page(rig.url, name, probe=True) if kind == "mse" else mjpeg_page(
            rig.url, name, 25)
        page = rig.page(html)
        try:
            time.sleep(SETTLE)
            page.evaluate("samples.length = 0")
            first = camera.frames
            time.sleep(seconds)
            samples = page.evaluate("samples")
            errors = page.evaluate("window.errors || []")
        finally:
            page.close()
        made = dict(camera.made)
        frames = camera.frames - first
    if errors:
        log.warning("%s: the page said %s", kind, errors)
    seen: dict[int, float] = {}
    for index, shown in samples:
        if index in made and index not in seen:
            seen[index] = shown - made[index] / 1e6
    return Latency(np.array(list(seen.values())), frames)


@dataclass
class Viewers:
    viewers: int
    idle: float  # server CPU without viewers, % of a core
    watched: float  # with them
    rate: float  # what each viewer got a second, mean: fragments (MSE) or bytes (MJPEG)

    @property
    def added(self) -> float:
        return self.watched - self.idle


def viewers(rig: Rig, kind: str, count: int, seconds: float, name: str,
            players: bool = False) -> Viewers:
    """Server CPU over *seconds* with no viewer, then with *count* pages watching *name*:
    socket readers (pages.reader_page), or with *players* the console's player itself."""
    idle = _server_cpu(rig, seconds)
    if players:
        html = player_page(rig.url, name, probe=False) if kind == "mse" else mjpeg_page(
            rig.url, name, 25)
        count_of = ("document.getElementById('v') ? document.getElementById('v')"
                    ".getVideoPlaybackQuality().totalVideoFrames : 0")
    else:
        html = reader_page(rig.url, name, kind)
        count_of = "got.messages" if kind == "mse" else "got.bytes"
    pages = [rig.page(html) for _ in range(count)]
    try:
        time.sleep(SETTLE)
        before = [_count(page, count_of) for page in pages]
        watched = _server_cpu(rig, seconds)
        after = [_count(page, count_of) for page in pages]
    finally:
        for page in pages:
            page.close()
    # Each page over its own interval: reading 16 pages one by one takes a while when loaded.
    rate = float(np.mean([(b - a) / (tb - ta) for (ta, a), (tb, b) in zip(before, after)]))
    return Viewers(count, idle, watched, rate)


def _count(page: Any, expression: str) -> tuple[float, float]:
    """(when, value) of a page's counter."""
    value = page.evaluate(expression)
    return time.monotonic(), value


def _server_cpu(rig: Rig, seconds: float) -> float:
    start = rig.server_cpu()
    time.sleep(seconds)
    return 100 * (rig.server_cpu() - start) / seconds


@dataclass
class PageLoad:
    streams: int
    load_ms: float  # navigation to the load event
    listed_ms: float  # navigation to every stream's name on the page
    previews_ms: float  # from scrolling to the grid to a picture in every preview on screen
    previews: int  # previews on screen


#: Whether every preview on screen shows a picture (the console's #grid of <img>).
PREVIEWS_SHOWN = """(() => {
  const shown = [...document.querySelectorAll("#grid img")]
    .filter((img) => img.getBoundingClientRect().top < window.innerHeight);
  return shown.length > 0 && shown.every((img) => img.complete && img.naturalWidth > 0)
    ? shown.length : 0;
})()"""


def page_load(rig: Rig, names: list[str], tries: int) -> PageLoad:
    """The console's page with *names* registered: the best of *tries* fresh loads."""
    best = PageLoad(len(names), float("inf"), float("inf"), float("inf"), 0)
    check = " && ".join(f"document.body.innerText.includes({name!r})" for name in names)
    for _ in range(tries):
        page = rig.browser.new_page(viewport={"width": 1280, "height": 900})
        try:
            start = time.perf_counter()
            page.goto(rig.url + "/", wait_until="load")
            load = 1000 * (time.perf_counter() - start)
            page.wait_for_function(check, timeout=15000, polling=10)
            listed = 1000 * (time.perf_counter() - start)
            page.evaluate("document.querySelector('#grid').scrollIntoView()")
            scrolled = time.perf_counter()  # the grid may be below the fold: lazy previews
            shown = page.wait_for_function(PREVIEWS_SHOWN, timeout=15000, polling=10)
            previews = 1000 * (time.perf_counter() - scrolled)
            count = int(shown.json_value())
        finally:
            page.close()
        if listed < best.listed_ms:
            best = PageLoad(len(names), load, listed, previews, count)
    return best
