"""Landing a decoded picture in a ring slot: pixel format and size, in as few passes as we can.

Measured on 1080p H.264 (docs/decoder.md has the figures), per frame:

- yuv420p at the source's size: the three planes copied straight into the slot,
  0.35 ms, no conversion at all. The cheapest way to carry video; clients convert.
- bgr24 / rgb24 (and any scaling): FFmpeg's swscale through one reused
  ``VideoReformatter``, then one copy into the slot, 1.7 ms. It follows the
  stream's colour matrix and range; OpenCV's I420 conversion, barely cheaper on
  one thread, assumes BT.601 and is visibly off on BT.709 cameras (most HD ones).
  A fresh reformatter per frame (``to_ndarray(format=...)``) costs 20% more.
- gray: full-range luma from swscale, 1.3 ms. (The raw Y plane, 0.24 ms, is
  video range 16-235: take the first rows of a yuv420p stream for that.)

PyAV has no way to reformat into a caller's buffer, hence the one copy.
"""

from __future__ import annotations

import av
import numpy as np
from av.video.reformatter import VideoReformatter

from .. import pixfmt
from ..spec import Size

INTERPOLATION = "BILINEAR"


class Converter:
    """Writes decoded frames into slots of one pixel format, at a fixed or the source's size.

    Keeps one swscale context across frames: use one Converter per decoding thread.
    """

    def __init__(self, fmt: str, size: Size | tuple[int, int] | None = None) -> None:
        if fmt not in pixfmt.FORMATS:
            raise ValueError(f"unknown output format {fmt!r}; choose among "
                             f"{', '.join(pixfmt.FORMATS)}")
        self.fmt = fmt
        self.size: tuple[int, int] | None = None
        if size is not None:
            width, height = size
            self.size = (width, height)
        self._reformatter = VideoReformatter()

    def output_size(self, frame: av.VideoFrame) -> tuple[int, int]:
        """(width, height) of what *frame* becomes: --size, else the source's; even for yuv420p."""
        w, h = self.size or (frame.width, frame.height)
        if self.fmt == "yuv420p":
            w, h = w - w % 2, h - h % 2
        return w, h

    def shape_for(self, frame: av.VideoFrame) -> tuple[int, ...]:
        return pixfmt.shape_of(self.fmt, *self.output_size(frame))

    def into(self, frame: av.VideoFrame, slot: np.ndarray) -> None:
        """Write *frame*, converted, into *slot* (of shape ``shape_for(frame)``)."""
        w, h = self.output_size(frame)
        if frame.format.name != self.fmt or (frame.width, frame.height) != (w, h):
            frame = self._reformatter.reformat(frame, width=w, height=h, format=self.fmt,
                                               interpolation=INTERPOLATION, threads=1)
        if self.fmt == "yuv420p":
            _copy_i420(frame, slot, w, h)
        else:  # packed: one plane of rows of w pixels, 1 or 3 bytes each
            row = slot.reshape(h, -1)
            np.copyto(row, _visible(frame.planes[0], row.shape[1]))


def _visible(plane, row_bytes: int | None = None) -> np.ndarray:
    """A plane's pixels as a 2-D view, without the padding FFmpeg puts at the end of rows."""
    rows = np.frombuffer(plane, np.uint8).reshape(-1, plane.line_size)
    return rows[:plane.height, :row_bytes or plane.width]


def _copy_i420(frame: av.VideoFrame, out: np.ndarray, w: int, h: int) -> None:
    """Y, U and V planes of a yuv420p frame into an (h*3/2, w) I420 array."""
    flat = out.reshape(-1)
    y, quarter = w * h, (w // 2) * (h // 2)
    np.copyto(flat[:y].reshape(h, w), _visible(frame.planes[0]))
    np.copyto(flat[y:y + quarter].reshape(h // 2, w // 2), _visible(frame.planes[1]))
    np.copyto(flat[y + quarter:].reshape(h // 2, w // 2), _visible(frame.planes[2]))
