"""Frame: one received frame, a read-only view into a ring slot."""

from __future__ import annotations

import time
from fractions import Fraction

import numpy as np

from . import pixfmt
from .descriptor import Descriptor
from .shm import RingReader


class Frame:
    """A frame as a subscriber receives it.

    ``array`` is the slot itself, mapped read-only: no copy is made. The
    writer reuses the slot once the ring wraps around, so a reader that keeps
    a frame for long checks ``valid()`` after using ``array``, or takes
    ``copy()``, which never returns a torn frame.
    """

    __slots__ = ("stream", "seq", "generation", "slot", "pts", "time_base", "timestamp_ns",
                 "fmt", "skipped", "_ring")

    def __init__(self, ring: RingReader, desc: Descriptor, skipped: int = 0) -> None:
        self._ring = ring
        self.stream = desc.stream
        self.seq = desc.seq
        self.generation = desc.generation
        self.slot = desc.slot
        self.pts = desc.pts
        self.time_base: Fraction | None = desc.time_base
        self.timestamp_ns = desc.timestamp_ns
        self.fmt = desc.fmt
        #: Frames of this stream published since the previous one this
        #: subscriber returned, and not returned.
        self.skipped = skipped

    @property
    def array(self) -> np.ndarray:
        """The pixels, in shared memory, read-only."""
        return self._ring.view(self.slot)

    @property
    def shape(self) -> tuple[int, ...]:
        return self._ring.geometry.shape

    @property
    def dtype(self) -> np.dtype:
        return self._ring.geometry.dtype

    @property
    def time(self) -> float | None:
        """Presentation time in seconds (pts x time_base), if the producer gave both."""
        if self.pts is None or self.time_base is None:
            return None
        return float(self.pts * self.time_base)

    @property
    def age(self) -> float:
        """Seconds since the producer wrote the frame (same-host clocks)."""
        return (time.time_ns() - self.timestamp_ns) / 1e9

    def valid(self) -> bool:
        """Whether the slot still holds this frame; False once the writer reused it."""
        return self._ring.holds(self.slot, self.seq)

    def copy(self, out: np.ndarray | None = None) -> np.ndarray:
        """A private copy of the pixels; raises FrameOverwritten if the slot was reused."""
        return self._ring.copy(self.slot, self.seq, out)

    def to_bgr(self, out: np.ndarray | None = None) -> np.ndarray:
        """The picture as a (h, w, 3) BGR array, whatever the stream's pixel format.

        A bgr24 frame comes back as its read-only view (no copy) unless *out* is
        given; other formats are converted into a new array or *out*. Like
        ``array``, check ``valid()`` afterwards if the frame may have been lapped.
        """
        return pixfmt.to_bgr(self.array, self.fmt, out)

    def __repr__(self) -> str:
        return (f"<Frame {self.stream} seq={self.seq} {self.shape} {self.fmt}"
                f"{'' if self.valid() else ' overwritten'}>")
