"""A subscriber for the soak (tests/soak) that checks every frame it is given.

    python -m tests.soak.reader STREAM --check pattern|marker|bars|shape [options]

Each frame is checked by content against what its producer must have written:

- ``pattern``: the built-in test pattern (``framebus decode testsrc``), exactly, for the
  frame's pts (the pattern's frame index); a JPEG within --min-psnr dB of it;
- ``marker``: a looping H.264 file made by framebus.testing.media, whose frames carry their index
  in blocks: the index read from the pixels must be the one the frame's pts says, and
  the picture within --min-psnr dB of the one encoded;
- ``bars``: a live camera showing scrolling SMPTE bars (framebus/testing/rtsp_server.py --pattern
  bars), whose frame index nobody knows: in each of its top two bands (three quarters of
  the picture) every row must equal the band's median row, which a frame mixed from two
  frames of the scroll (a tear) breaks by 8 to 50 levels, where a whole frame keeps under 1;
- ``shape``: only the stream's geometry.

And whatever the check, a reader of the newest frame never goes back: within one ring,
each frame returned is newer than the one before.

From shared memory the check runs on a copy (``Frame.copy()``, which refuses a lapped
frame), or with --zero-copy on the mapped slot itself, judged only if ``Frame.valid()``
still holds afterwards: the two ways a caller may read frames. A frame that fails its
check is *bad*: a torn, mixed or wrong frame reached the caller.

Every --report seconds it prints one JSON line of running totals (and the gaps, the
silences longer than --gap seconds, that ended since the last line); SIGTERM prints a
last one and exits.
"""

from __future__ import annotations

import argparse
import json
import math
import signal
import time

import cv2
import numpy as np

import framebus
from framebus.testing import media
from framebus.testsrc import TestPattern

#: How far (mean absolute levels) a row of a bars band may be from the band's median row.
BARS_TOLERANCE = 3.0


class Checker:
    """Says what is wrong with a frame's pixels, or None if they are right."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self._patterns: dict[tuple, TestPattern] = {}
        self._newest: dict[bytes, int] = {}  # ring token -> the newest seq returned of it
        self.lossy = args.codec == "jpeg"

    def __call__(self, frame: framebus.Frame, pixels: np.ndarray) -> str | None:
        if frame.stream != self.args.stream:
            return f"frame of stream {frame.stream!r}"
        newest = self._newest.get(frame.token, -1)
        self._newest[frame.token] = max(newest, frame.seq)
        if frame.seq <= newest:  # a reader of the newest frame never goes back in time
            return f"seq {frame.seq} returned after seq {newest} of the same ring"
        if self.args.shape and pixels.shape != self.args.shape:
            return f"shape {pixels.shape}, expected {self.args.shape}"
        return getattr(self, f"_{self.args.check}")(frame, pixels)

    def _shape(self, frame, pixels) -> str | None:
        return None

    def _bars(self, frame, pixels) -> str | None:
        height = pixels.shape[0]
        for top, bottom in ((0, height * 2 // 3), (height * 2 // 3, height * 3 // 4)):
            band = pixels[top + 3:bottom - 3].astype(np.int16)
            worst = np.abs(band - np.median(band, axis=0)).mean(axis=(1, 2))
            if worst.max() > BARS_TOLERANCE:
                row = top + 3 + int(worst.argmax())
                return f"seq {frame.seq}: row {row} is {worst.max():.1f} levels off its band"
        return None

    def _pattern(self, frame, pixels) -> str | None:
        if frame.pts is None:
            return "no pts"
        pattern = self._patterns.get(pixels.shape)
        if pattern is None:
            pattern = self._patterns[pixels.shape] = TestPattern(pixels.shape)
        expected = pattern.frame(frame.pts)
        if self.lossy:
            quality = psnr(pixels, expected)
            return None if quality >= self.args.min_psnr else f"pts {frame.pts}: {quality:.1f} dB"
        if np.array_equal(pixels, expected):
            return None
        wrong = np.argwhere(pixels != expected)
        return (f"pts {frame.pts} seq {frame.seq}: {len(wrong)} pixels differ, rows "
                f"{wrong[0][0]}..{wrong[-1][0]}")

    def _marker(self, frame, pixels) -> str | None:
        if frame.time is None:
            return "no timestamp"
        index = round(frame.time * self.args.fps) % self.args.frames
        fmt = "bgr24" if self.lossy else frame.fmt
        found = media.marker(pixels, fmt)
        if found != index:
            return f"pts {frame.pts} is frame {index}, its pixels say {found}"
        quality = psnr(*self._comparable(pixels, fmt, index))
        if quality < self.args.min_psnr:
            return f"frame {index}: {quality:.1f} dB from the picture encoded"
        return None

    def _comparable(self, pixels: np.ndarray, fmt: str, index: int):
        """The frame and the encoded picture, in one format: luma for planar frames."""
        if fmt == "yuv420p":
            height = pixels.shape[0] * 2 // 3
            picture = media.picture(index, pixels.shape[1], height)
            return pixels[:height], cv2.cvtColor(picture, cv2.COLOR_BGR2GRAY)
        return pixels, media.picture(index, pixels.shape[1], pixels.shape[0])


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float32) - b.astype(np.float32)) ** 2)
    return math.inf if mse == 0 else float(10 * np.log10(255.0**2 / mse))


class Tally:
    """Running totals, and the silences between frames."""

    def __init__(self, gap: float) -> None:
        self.gap = gap
        self.frames = self.good = self.bad = self.overwritten = 0
        self.first: float | None = None
        self.last: float | None = None
        self.gaps: list[tuple[float, float]] = []  # ended since the last report
        self.bad_examples: list[str] = []

    def arrived(self, now: float) -> None:
        if self.last is not None and now - self.last > self.gap:
            self.gaps.append((self.last, now))
        self.first = self.first or now
        self.last = now
        self.frames += 1

    def judged(self, problem: str | None) -> None:
        if problem is None:
            self.good += 1
        else:
            self.bad += 1
            if len(self.bad_examples) < 5:
                self.bad_examples.append(problem)

    def report(self, sub: framebus.Subscriber, final: bool = False) -> str:
        line = json.dumps({
            "t": time.monotonic(), "frames": self.frames, "good": self.good, "bad": self.bad,
            "overwritten": self.overwritten, "dropped": sub.dropped, "rejected": sub.rejected,
            "first": self.first, "last": self.last, "gaps": self.gaps, "path": sub.path,
            "bad_examples": self.bad_examples, "final": final})
        self.gaps = []
        return line


def consume(args: argparse.Namespace) -> None:
    check = Checker(args)
    tally = Tally(args.gap)
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
    with framebus.Subscriber(args.stream, transport=args.transport, codec=args.codec) as sub:
        next_report = time.monotonic() + args.report
        while not stopping:
            try:
                frame = sub.recv(timeout=min(args.report, 0.1))
            except framebus.Timeout:
                frame = None
            if frame is not None:
                tally.arrived(time.monotonic())
                judge(frame, check, tally, args.zero_copy)
                if args.delay:
                    time.sleep(args.delay)
            if time.monotonic() >= next_report:
                next_report = time.monotonic() + args.report
                print(tally.report(sub), flush=True)
        print(tally.report(sub, final=True), flush=True)


def judge(frame: framebus.Frame, check: Checker, tally: Tally, zero_copy: bool) -> None:
    if zero_copy or frame.remote:
        problem = check(frame, frame.array)
        if not frame.valid():  # lapped while we looked: the caller must throw it away
            tally.overwritten += 1
            return
    else:
        try:
            pixels = frame.copy()
        except framebus.FrameOverwritten:
            tally.overwritten += 1
            return
        problem = check(frame, pixels)
    tally.judged(problem)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("stream")
    ap.add_argument("--check", choices=("pattern", "marker", "bars", "shape"), required=True)
    ap.add_argument("--shape", type=lambda s: tuple(int(n) for n in s.split(",")),
                    help="the geometry every frame must have, e.g. 240,320,3")
    ap.add_argument("--frames", type=int, help="marker: frames in the looping file")
    ap.add_argument("--fps", type=float, help="marker: the file's frame rate")
    ap.add_argument("--min-psnr", type=float, default=27.0)
    ap.add_argument("--transport", default="auto", choices=("auto", "shm", "tcp"))
    ap.add_argument("--codec", default="raw", choices=("raw", "jpeg"))
    ap.add_argument("--zero-copy", action="store_true", help="check the mapped slot itself")
    ap.add_argument("--delay", type=float, default=0.0, help="sleep after each frame")
    ap.add_argument("--gap", type=float, default=0.3, help="a silence this long is a gap")
    ap.add_argument("--report", type=float, default=0.25, help="seconds between lines")
    args = ap.parse_args()
    if args.check == "marker" and not (args.frames and args.fps):
        ap.error("--check marker needs --frames and --fps")
    consume(args)


if __name__ == "__main__":
    main()
