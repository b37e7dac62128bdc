"""Pixel formats: how a frame of a given format lies in an array, and turning it into BGR.

framebus stores every format as one C-contiguous uint8 array:

=========  ==================  ===============================================
format     array shape         layout
=========  ==================  ===============================================
bgr24      (h, w, 3)           packed B, G, R (OpenCV's native order)
rgb24      (h, w, 3)           packed R, G, B
gray       (h, w)              luma only
yuv420p    (h * 3 // 2, w)     planar I420: Y (h rows), then U, then V, each
                               (h/2, w/2) laid row after row; w and h even
=========  ==================  ===============================================

Producers may also publish ``bgra`` (h, w, 4), which ``to_bgr`` converts too. A
format name framebus does not know is passed through untouched (``raw``, or a
producer's own format): its shape is whatever the producer declared.

OpenCV is imported by ``to_bgr`` alone, when it first converts: ``import framebus``
does not load it.
"""

from __future__ import annotations

from typing import Literal, get_args

import numpy as np

#: The formats a decoder writes (``framebus decode --format``).
Format = Literal["bgr24", "rgb24", "gray", "yuv420p"]
FORMATS: tuple[Format, ...] = get_args(Format)


def shape_of(fmt: str, width: int, height: int) -> tuple[int, ...]:
    """The array shape of a *width* x *height* picture in *fmt*."""
    if fmt in ("bgr24", "rgb24"):
        return (height, width, 3)
    if fmt == "gray":
        return (height, width)
    if fmt == "yuv420p":
        if width % 2 or height % 2:
            raise ValueError(f"yuv420p needs an even width and height, got {width}x{height}")
        return (height * 3 // 2, width)
    raise ValueError(f"unknown pixel format {fmt!r}; choose among {', '.join(FORMATS)}")


def check_shape(fmt: str, shape: tuple[int, ...]) -> None:
    """Raise ValueError if an array of *shape* cannot hold a picture in *fmt*."""
    if fmt not in FORMATS:
        return
    if len(shape) < 2:
        raise ValueError(f"a {fmt} frame needs at least 2 dimensions, got {shape}")
    width, height = picture_size(fmt, shape)
    if fmt == "yuv420p" and shape[0] % 3:
        raise ValueError(f"a yuv420p frame has h*3/2 rows: {shape[0]} is not a multiple of 3")
    if shape_of(fmt, width, height) != tuple(shape):
        raise ValueError(f"shape {tuple(shape)} is not a {fmt} picture; a {width}x{height} "
                         f"one is {shape_of(fmt, width, height)}")


def picture_size(fmt: str, shape: tuple[int, ...]) -> tuple[int, int]:
    """(width, height) of the picture held in an array of *shape* in *fmt*."""
    if fmt == "yuv420p":
        return shape[1], shape[0] * 2 // 3
    return shape[1], shape[0]


def to_bgr(array: np.ndarray, fmt: str, out: np.ndarray | None = None) -> np.ndarray:
    """The picture as a (h, w, 3) BGR array, converted into *out* if given.

    bgr24 comes back as it is (no copy) unless *out* is given. Raises
    ValueError for a format it cannot turn into colour.
    """
    if fmt == "bgr24":
        if out is None:
            return array
        np.copyto(out, array)
        return out
    import cv2

    codes = {"rgb24": cv2.COLOR_RGB2BGR, "gray": cv2.COLOR_GRAY2BGR,
             "yuv420p": cv2.COLOR_YUV2BGR_I420, "bgra": cv2.COLOR_BGRA2BGR}
    if fmt not in codes:
        raise ValueError(f"cannot convert pixel format {fmt!r} to BGR")
    try:
        return cv2.cvtColor(array, codes[fmt], dst=out)
    except cv2.error as exc:
        raise ValueError(f"cannot convert a {array.shape} {array.dtype} array as {fmt}: "
                         f"{exc.err}") from None
