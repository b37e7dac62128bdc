"""A built-in moving test pattern: a stream that needs no camera.

Pixel (y, x, c) of frame *seq* is ``(x + 2*y + 85*c + seq) mod 256``: diagonal
bands that drift with every frame, and a content any reader can check
exactly from the frame's seq alone.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from .publisher import Publisher

log = logging.getLogger(__name__)


class TestPattern:
    """Fills arrays of one shape with the pattern of a given frame."""

    __test__ = False  # not a pytest test class

    def __init__(self, shape: tuple[int, ...]) -> None:
        if len(shape) not in (2, 3):
            raise ValueError(f"test pattern needs (h, w) or (h, w, c), got {shape}")
        h, w = shape[:2]
        y, x = np.mgrid[0:h, 0:w]
        base = x + 2 * y
        if len(shape) == 3:
            base = base[..., None] + 85 * np.arange(shape[2])
        self.shape = tuple(shape)
        self._base = (base % 256).astype(np.uint8)

    def fill(self, out: np.ndarray, seq: int) -> None:
        """Write frame *seq* into *out* in place (uint8 arithmetic wraps)."""
        np.add(self._base, np.uint8(seq % 256), out=out)

    def frame(self, seq: int) -> np.ndarray:
        out = np.empty(self.shape, np.uint8)
        self.fill(out, seq)
        return out

    def matches(self, array: np.ndarray, seq: int) -> bool:
        """Whether *array* is exactly frame *seq*."""
        return array.shape == self.shape and np.array_equal(array, self.frame(seq))


def run(pub: Publisher, fps: float, frames: int | None = None,
        stop: threading.Event | None = None) -> int:
    """Publish the pattern on *pub* at *fps* (0: flat out) until *frames* or *stop*.

    Paced against a clock, not by sleeping a fixed time, so the rate holds
    however long a frame takes to fill. Returns the number of frames published.
    """
    pattern = TestPattern(pub.shape)
    period = 1.0 / fps if fps > 0 else 0.0
    start = time.monotonic()
    published = 0
    while frames is None or published < frames:
        if stop is not None and stop.is_set():
            break
        with pub.frame(pts=published) as buf:
            pattern.fill(buf, pub.seq)
        published += 1
        if period:
            delay = start + published * period - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            elif delay < -1.0:
                start = time.monotonic() - published * period  # fell behind: don't burst
    return published
