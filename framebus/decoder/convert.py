"""Landing a decoded picture in a ring slot: pixel format and size, in as few copies as we can.

The slot is the destination of the one unavoidable pass over the pixels; how each
format gets there was measured (docs/decoder.md has the figures):

- yuv420p at the source's size: the planes are copied straight into the slot,
  no conversion at all (the cheapest way to carry video; clients convert).
- gray at the source's size: the luma plane, copied.
- bgr24 / rgb24: OpenCV converts the I420 planes straight into the slot.
- anything that needs scaling or a source that is not yuv420p: FFmpeg's swscale
  (PyAV ``reformat``) to the target, then one copy into the slot.
"""

from __future__ import annotations

import av
import cv2
import numpy as np

from .. import pixfmt

#: What PyAV calls our formats.
_AV_FORMAT = {"bgr24": "bgr24", "rgb24": "rgb24", "gray": "gray", "yuv420p": "yuv420p"}
_FROM_I420 = {"bgr24": cv2.COLOR_YUV2BGR_I420, "rgb24": cv2.COLOR_YUV2RGB_I420}


class Converter:
    """Writes decoded frames into slots of one pixel format, at a fixed or the source's size."""

    def __init__(self, fmt: str, size: tuple[int, int] | None = None) -> None:
        if fmt not in _AV_FORMAT:
            raise ValueError(f"unknown output format {fmt!r}; choose among "
                             f"{', '.join(_AV_FORMAT)}")
        self.fmt = fmt
        self.size = size
        self._i420: np.ndarray | None = None  # scratch for sources with padded planes

    def output_size(self, frame: av.VideoFrame) -> tuple[int, int]:
        """(width, height) of what *frame* becomes: --size, else the source's, made even for yuv420p."""
        w, h = self.size or (frame.width, frame.height)
        if self.fmt == "yuv420p":
            w, h = w - w % 2, h - h % 2
        return w, h

    def shape_for(self, frame: av.VideoFrame) -> tuple[int, ...]:
        return pixfmt.shape_of(self.fmt, *self.output_size(frame))

    def into(self, frame: av.VideoFrame, slot: np.ndarray) -> None:
        """Write *frame*, converted, into *slot* (of shape ``shape_for(frame)``)."""
        w, h = self.output_size(frame)
        native = (frame.format.name == "yuv420p" and (w, h) == (frame.width, frame.height))
        if native and self.fmt == "yuv420p":
            _copy_i420(frame, slot)
        elif native and self.fmt == "gray":
            _copy_plane(frame.planes[0], slot, w, h)
        elif native and self.fmt in _FROM_I420:
            cv2.cvtColor(self._as_i420(frame), _FROM_I420[self.fmt], dst=slot)
        else:
            self._swscale_into(frame, slot, w, h)

    def _as_i420(self, frame: av.VideoFrame) -> np.ndarray:
        """The frame's planes as one contiguous I420 array: a view when FFmpeg left no padding."""
        w, h = frame.width, frame.height
        if self._i420 is None or self._i420.shape != (h * 3 // 2, w):
            self._i420 = np.empty((h * 3 // 2, w), np.uint8)
        _copy_i420(frame, self._i420)
        return self._i420

    def _swscale_into(self, frame: av.VideoFrame, slot: np.ndarray, w: int, h: int) -> None:
        out = frame.reformat(width=w, height=h, format=_AV_FORMAT[self.fmt],
                             interpolation="BILINEAR")
        if self.fmt == "yuv420p":
            _copy_i420(out, slot)
        elif self.fmt == "gray":
            _copy_plane(out.planes[0], slot, w, h)
        else:
            _copy_plane(out.planes[0], slot.reshape(h, w * 3), w * 3, h)


def _plane_rows(plane: av.video.plane.VideoPlane, width: int, height: int) -> np.ndarray:
    """A plane's pixels as an (height, width) view, without its line padding."""
    rows = np.frombuffer(plane, np.uint8).reshape(-1, plane.line_size)
    return rows[:height, :width]


def _copy_plane(plane, out: np.ndarray, width: int, height: int) -> None:
    np.copyto(out.reshape(height, width), _plane_rows(plane, width, height))


def _copy_i420(frame: av.VideoFrame, out: np.ndarray) -> None:
    """Y, U and V planes of a yuv420p frame into an (h*3/2, w) I420 array."""
    w, h = out.shape[1], out.shape[0] * 2 // 3
    flat = out.reshape(-1)
    y, quarter = w * h, (w // 2) * (h // 2)
    np.copyto(flat[:y].reshape(h, w), _plane_rows(frame.planes[0], w, h))
    np.copyto(flat[y:y + quarter].reshape(h // 2, w // 2),
              _plane_rows(frame.planes[1], w // 2, h // 2))
    np.copyto(flat[y + quarter:].reshape(h // 2, w // 2),
              _plane_rows(frame.planes[2], w // 2, h // 2))
