"""JPEG pictures for the browser: from a frame's pixels, or from one decoded key frame.

Both run in a worker thread (libjpeg-turbo and FFmpeg release the GIL), never on the
event loop. A frame is read in place in its ring slot and checked afterwards: a frame
the writer lapped while it was encoded gives None, never a torn picture.
"""

from __future__ import annotations

from typing import Any

import av
import cv2
import numpy as np
import simplejpeg

from ..frame import Frame
from ..packets import CodecInfo

QUALITY = 80
#: Packed formats libjpeg-turbo reads as they lie in the ring (no conversion, no copy).
COLORSPACES = {"bgr24": "BGR", "rgb24": "RGB", "gray": "GRAY", "bgra": "BGRA"}


def scaled(image: np.ndarray, width: int | None) -> np.ndarray:
    """*image* at most *width* wide (never enlarged), its aspect kept."""
    if not width or image.shape[1] <= width:
        return image
    height = max(2, round(image.shape[0] * width / image.shape[1]))
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)


def jpeg_of_array(image: np.ndarray, fmt: str, quality: int = QUALITY,
                  width: int | None = None) -> bytes:
    """A picture in one of framebus's pixel formats as JPEG, at most *width* wide."""
    colorspace = COLORSPACES.get(fmt)
    if colorspace is None:  # yuv420p: video's limited range, so through BGR for true colour
        from ..pixfmt import to_bgr

        image, colorspace = to_bgr(image, fmt), "BGR"
    image = scaled(image, width)
    if image.ndim == 2:
        image = image[:, :, None]
    return simplejpeg.encode_jpeg(np.ascontiguousarray(image), quality, colorspace,
                                  colorsubsampling="420" if colorspace != "GRAY" else "Gray",
                                  fastdct=True)


def jpeg_of_frame(frame: Frame, quality: int = QUALITY, width: int | None = None) -> bytes | None:
    """The frame as JPEG, read in place; None if the writer lapped it meanwhile."""
    data = jpeg_of_array(frame.array, frame.fmt, quality, width)
    return data if frame.valid() else None


def jpeg_of_key_frame(codec: CodecInfo, data: bytes, quality: int = QUALITY,
                      width: int | None = None) -> bytes:
    """One key frame's packet decoded (by a decoder of its own) as JPEG.

    Raises av.FFmpegError for a packet FFmpeg cannot decode, ValueError for none out."""
    ctx: Any = av.CodecContext.create(codec.name, "r")  # a VideoCodecContext
    if codec.extradata:
        ctx.extradata = codec.extradata
    frames = [*ctx.decode(av.Packet(data)), *ctx.decode(None)]  # None: flush, out it comes
    if not frames:
        raise ValueError(f"the {codec.name} key frame decoded to no picture")
    return jpeg_of_array(frames[-1].to_ndarray(format="rgb24"), "rgb24", quality, width)
