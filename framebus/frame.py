"""Frame: one received frame, a read-only view into a ring slot, or an array of its own."""

from __future__ import annotations

import time
from fractions import Fraction

import numpy as np

from . import pixfmt
from .protocol.descriptor import Descriptor
from .shm import RingReader


class Frame:
    """A frame as a subscriber receives it.

    From shared memory, ``array`` is the slot itself, mapped read-only: no
    copy is made. The writer reuses the slot once the ring wraps around, so a
    reader that keeps a frame for long checks ``valid()`` after using
    ``array``, or takes ``copy()``, which never returns a torn frame.

    From the network, ``array`` is a read-only array that owns its buffer:
    it stays valid for as long as it is kept.
    """

    __slots__ = ("desc", "skipped", "_ring", "_pixels")

    def __init__(self, desc: Descriptor, skipped: int = 0, *, ring: RingReader | None = None,
                 pixels: np.ndarray | None = None) -> None:
        if (ring is None) == (pixels is None):
            raise TypeError("a Frame lies in a ring slot or in its own pixels: give one")
        #: The producer's descriptor of the frame, as the ring or the relay confirmed it.
        self.desc = desc
        #: Frames of this stream published since the previous one this
        #: subscriber returned, and not returned.
        self.skipped = skipped
        self._ring = ring
        self._pixels = pixels

    # What the descriptor says, read through: the frame keeps it rather than copies of it.

    @property
    def stream(self) -> str:
        return self.desc.stream

    @property
    def seq(self) -> int:
        return self.desc.seq

    @property
    def generation(self) -> int:
        return self.desc.generation

    @property
    def token(self) -> bytes:
        """The ring's random token: a new one means a restarted producer or a new generation."""
        return self.desc.token

    @property
    def slot(self) -> int:
        return self.desc.slot

    @property
    def pts(self) -> int | None:
        return self.desc.pts

    @property
    def time_base(self) -> Fraction | None:
        return self.desc.time_base

    @property
    def timestamp_ns(self) -> int:
        return self.desc.timestamp_ns

    @property
    def fmt(self) -> str:
        return self.desc.fmt

    @property
    def array(self) -> np.ndarray:
        """The pixels, read-only: in shared memory, or the frame's own."""
        if self._ring is None:
            assert self._pixels is not None
            return self._pixels
        return self._ring.view(self.desc.slot)

    @property
    def shape(self) -> tuple[int, ...]:
        return self.array.shape

    @property
    def dtype(self) -> np.dtype:
        return self.array.dtype

    @property
    def remote(self) -> bool:
        """Whether the frame came over the network (and owns its pixels)."""
        return self._ring is None

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
        """Whether the slot still holds this frame; False once the writer reused it.

        Always True for a frame with pixels of its own.
        """
        return self._ring is None or self._ring.holds(self.slot, self.seq)

    def copy(self, out: np.ndarray | None = None) -> np.ndarray:
        """A private, writable copy of the pixels.

        Raises FrameOverwritten if the slot was reused before or while copying.
        """
        if self._ring is None:
            if out is None:
                return self.array.copy()
            np.copyto(out, self.array)
            return out
        return self._ring.copy(self.slot, self.seq, out)

    def to_bgr(self, out: np.ndarray | None = None) -> np.ndarray:
        """The picture as a (h, w, 3) BGR array, whatever the stream's pixel format.

        A bgr24 frame comes back as its read-only view (no copy) unless *out* is
        given; other formats are converted into a new array or *out*. Like
        ``array``, check ``valid()`` afterwards if the frame may have been lapped.
        """
        return pixfmt.to_bgr(self.array, self.fmt, out)

    def bgr_copy(self) -> np.ndarray:
        """The picture as a new (h, w, 3) BGR array of the caller's own.

        From shared memory, check ``valid()`` afterwards: only then was the frame
        whole while it was converted. Raises ValueError for a format with no
        colour conversion.
        """
        width, height = pixfmt.picture_size(self.fmt, self.shape)
        return self.to_bgr(out=np.empty((height, width, 3), np.uint8))

    def __repr__(self) -> str:
        return (f"<Frame {self.stream} seq={self.seq} {self.shape} {self.fmt}"
                f"{'' if self.valid() else ' overwritten'}>")
