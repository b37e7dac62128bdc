"""Real encoded video for the decoder tests, made with PyAV (libx264) from a known picture.

Every frame carries its index as a row of black and white 16x16 blocks in its top
left corner, which survives H.264 compression and scaling, so a test can tell which
frame it received from the pixels alone. The rest of the picture is a moving
gradient, so the encoder has real work to do.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

MARKER_BITS = 12
BLOCK = 16


def picture(index: int, width: int, height: int) -> np.ndarray:
    """Frame *index* as bgr24: a drifting gradient, with the index written in blocks."""
    y, x = np.mgrid[0:height, 0:width]
    image = np.empty((height, width, 3), np.uint8)
    image[..., 0] = (x + 3 * index) % 256
    image[..., 1] = (y + 2 * index) % 256
    image[..., 2] = ((x + y) // 2 + index) % 256
    image[:BLOCK * 2, :BLOCK * (MARKER_BITS + 2)] = 128
    for bit in range(MARKER_BITS):
        value = 255 if index >> bit & 1 else 0
        x0 = BLOCK * (bit + 1)
        image[BLOCK // 2:BLOCK // 2 + BLOCK, x0:x0 + BLOCK] = value
    return image


def marker(image: np.ndarray, fmt: str = "bgr24") -> int:
    """The index written in a frame's corner (bgr24, rgb24, gray or yuv420p)."""
    height, width = image.shape[:2] if fmt != "yuv420p" else (image.shape[0] * 2 // 3,
                                                              image.shape[1])
    luma = {"gray": lambda a: a, "yuv420p": lambda a: a[:height],
            "bgr24": lambda a: cv2.cvtColor(a, cv2.COLOR_BGR2GRAY),
            "rgb24": lambda a: cv2.cvtColor(a, cv2.COLOR_RGB2GRAY)}[fmt](image)
    return marker_in_luma(luma, width)


def marker_in_luma(luma: np.ndarray, width: int, source_width: int | None = None) -> int:
    scale = width / (source_width or width)
    index = 0
    for bit in range(MARKER_BITS):
        x0, y0 = int(BLOCK * (bit + 1) * scale), int(BLOCK // 2 * scale)
        block = luma[y0 + 2:y0 + int(BLOCK * scale) - 2, x0 + 2:x0 + int(BLOCK * scale) - 2]
        if block.mean() > 128:
            index |= 1 << bit
    return index


def encode(path: Path, frames: int, width: int = 320, height: int = 240, fps: int = 25,
           first: int = 0, container_format: str | None = None) -> Path:
    """Encode frames *first* .. *first+frames-1* of the picture into an H.264 file."""
    with av.open(str(path), "w", format=container_format) as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.time_base = Fraction(1, fps)
        stream.options = {"preset": "ultrafast", "crf": "18", "g": str(fps)}
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(picture(first + i, width, height), format="bgr24")
            frame.pts = i
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return path


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)
