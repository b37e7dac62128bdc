"""Real encoded video for the tests, made with PyAV (libx264) from a known picture.

Every frame carries its index as a row of black and white 16x16 blocks in its top
left corner, which survives H.264 compression and scaling, so a test can tell which
frame it received from the pixels alone. The rest of the picture is a moving
gradient, so the encoder has real work to do.

The clips have a camera's GOP: a key frame every *gop* frames exactly (one second by
default), P frames between. :func:`encode_frames` makes sure of it whatever the frames'
origin: a frame decoded from another source (FFmpeg's lavfi sources among them) keeps
its picture type, often I, and libx264 obeys a frame's picture type, which would make
every frame a key frame; scene-cut detection would add key frames of its own.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
from av.video.frame import PictureType

from ..packets.layout import CodecInfo

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
    """The index written in the corner of a luma plane *width* wide, scaled from a picture
    *source_width* wide (the same width by default)."""
    scale = width / (source_width or width)
    index = 0
    for bit in range(MARKER_BITS):
        x0, y0 = int(BLOCK * (bit + 1) * scale), int(BLOCK // 2 * scale)
        block = luma[y0 + 2:y0 + int(BLOCK * scale) - 2, x0 + 2:x0 + int(BLOCK * scale) - 2]
        if block.mean() > 128:
            index |= 1 << bit
    return index


def gop_options(gop: int) -> dict[str, str]:
    """libx264 options for a key frame every *gop* frames, exactly: no scene cuts."""
    return {"g": str(gop), "keyint_min": str(gop), "sc_threshold": "0"}


def encode_frames(path: Path, frames: Iterable[av.VideoFrame | np.ndarray], width: int,
                  height: int, fps: int = 25, gop: int | None = None,
                  container_format: str | None = None,
                  options: Mapping[str, str] | None = None) -> Path:
    """Encode *frames* (PyAV frames, or bgr24 arrays) into an H.264 file at *fps*, with a
    key frame every *gop* frames (default: every second). *options* go to libx264 after
    the defaults (preset ultrafast, crf 18); the GOP options always win."""
    with av.open(str(path), "w", format=container_format) as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.time_base = Fraction(1, fps)
        stream.options = {"preset": "ultrafast", "crf": "18", **(options or {}),
                          **gop_options(gop or fps)}
        for i, image in enumerate(frames):
            frame = (image if isinstance(image, av.VideoFrame)
                     else av.VideoFrame.from_ndarray(image, format="bgr24"))
            frame.pict_type = PictureType.NONE  # the encoder decides: I at the GOP, else P
            frame.pts = i
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return path


def encode(path: Path, frames: int, width: int = 320, height: int = 240, fps: int = 25,
           first: int = 0, container_format: str | None = None, gop: int | None = None) -> Path:
    """Encode frames *first* .. *first+frames-1* of the picture into an H.264 file, with a
    key frame every *gop* frames (default: every second)."""
    pictures = (picture(first + i, width, height) for i in range(frames))
    return encode_frames(path, pictures, width, height, fps, gop, container_format)


def key_frames(path: Path) -> list[int]:
    """The indices of the key frames of *path*'s video, counted in presentation order
    (decoded: raw H.264 has no timestamps to count by)."""
    with av.open(str(path)) as container:
        return [i for i, frame in enumerate(container.decode(video=0)) if frame.key_frame]


def picture_types(path: Path) -> str:
    """The picture type of every frame of *path*'s video in presentation order, one letter
    each: "IPPP...", "IPBBP..." ("?" for a frame without one)."""
    with av.open(str(path)) as container:
        return "".join(PictureType(frame.pict_type).name if frame.pict_type else "?"
                       for frame in container.decode(video=0))


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Peak signal-to-noise ratio of two 8-bit pictures, in dB (inf when equal)."""
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else float(10 * np.log10(255.0**2 / mse))


@dataclass(frozen=True)
class DemuxedPacket:
    """A packet as FFmpeg's demuxer gives it, its bytes copied: what a decoder publishes."""

    data: bytes
    pts: int | None
    dts: int | None
    duration: int | None
    keyframe: bool

    @classmethod
    def of(cls, packet: av.Packet, duration: int | None = None) -> DemuxedPacket:
        return cls(bytes(packet), packet.pts, packet.dts,
                   packet.duration if duration is None else duration, packet.is_keyframe)


def demux(path: Path) -> tuple[CodecInfo, list[DemuxedPacket]]:
    """The codec and every packet of *path*'s first video stream, by PyAV's own demuxer."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        cc, tb = stream.codec_context, stream.time_base
        codec = CodecInfo(cc.name, bytes(cc.extradata or b""), (tb.numerator, tb.denominator),
                          cc.width, cc.height)
        return codec, [DemuxedPacket.of(p) for p in container.demux(stream) if p.size]
