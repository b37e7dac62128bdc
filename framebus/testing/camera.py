"""A live H.264 camera for the console's tests and bench: colour bars with the frame index.

The picture is seven full-saturation colour bars (a screenshot can check their colours)
over a band with the frame index as a bar code of CODE_BITS black or white blocks (a page
or a test reads it back from the video, to know which frame it shows). Frames are encoded
live by libx264 (ultrafast, zerolatency: no frame held back) into Annex B packets, as a
live source gives them, and published as a packet stream, with or without pixels.
``made`` records when each frame was drawn (the producer's clock, ns since the epoch).
"""

from __future__ import annotations

import logging
import threading
import time
from fractions import Fraction

import av
import numpy as np

from ..packets import CodecInfo, PacketPublisher
from ..publisher import Publisher
from .media import gop_options

log = logging.getLogger(__name__)

#: Bars, left to right, as RGB.
BARS = ((255, 255, 255), (255, 255, 0), (0, 255, 255), (0, 255, 0), (255, 0, 255),
        (255, 0, 0), (0, 0, 255))
CODE_BITS = 16
#: The code band is the bottom quarter of the picture; blocks are as wide as fit in it.
CODE_BAND = 4


def bars(index: int, width: int, height: int) -> np.ndarray:
    """Frame *index* as bgr24: the bars over the index's bar code (bit 0 leftmost)."""
    image = np.zeros((height, width, 3), np.uint8)
    top = height - height // CODE_BAND
    for i, (r, g, b) in enumerate(BARS):
        image[:top, i * width // len(BARS):(i + 1) * width // len(BARS)] = (b, g, r)
    block = width // CODE_BITS
    for bit in range(CODE_BITS):
        if index >> bit & 1:
            image[top:, bit * block:(bit + 1) * block] = 255
    return image


def read_code(rgb: np.ndarray) -> int:
    """The index in a picture of the bars (any size, RGB or BGR): each block's centre."""
    height, width = rgb.shape[:2]
    y = height - height // CODE_BAND // 2
    block = width / CODE_BITS
    index = 0
    for bit in range(CODE_BITS):
        x = int((bit + 0.5) * block)
        if rgb[y - 2:y + 3, x - 2:x + 3].mean() > 128:
            index |= 1 << bit
    return index


class Camera:
    """Encodes and publishes the bars at *fps* in a thread, until close()."""

    def __init__(self, name: str, width: int = 640, height: int = 360, fps: int = 25,
                 gop: int = 25, *, packets: bool = True, pixels: bool = False,
                 broker: str | None = None, global_header: bool = False,
                 bitrate: int | None = None) -> None:
        self.name, self.width, self.height, self.fps = name, width, height, fps
        self.broker = broker
        self.made: dict[int, int] = {}
        self.frames = 0
        self._encoder = _encoder(width, height, fps, gop, global_header, bitrate)
        self._packets = PacketPublisher(name, CodecInfo(
            "h264", bytes(self._encoder.extradata or b""), (1, 90000), width, height),
            broker=broker) if packets else None
        self._pixels = (Publisher(name, shape=(height, width, 3), fmt="bgr24", broker=broker)
                        if pixels else None)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"camera {name}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        start = time.monotonic()
        index = 0
        while not self._stop.is_set():
            self._frame(index)
            index += 1
            self.frames = index
            self._stop.wait(max(0.0, start + index / self.fps - time.monotonic()))

    def _frame(self, index: int) -> None:
        image = bars(index, self.width, self.height)
        self.made[index] = time.time_ns()
        if self._pixels is not None:
            self._pixels.publish(image, pts=index * 3600)
        if self._packets is None:
            return
        frame = av.VideoFrame.from_ndarray(image, format="bgr24").reformat(format="yuv420p")
        frame.pts = index * 3600
        for packet in self._encoder.encode(frame):
            self._packets.publish(packet, pts=packet.pts, dts=packet.dts,
                                  duration=3600, keyframe=packet.is_keyframe)

    def close(self) -> None:
        """Stop and unpublish. Idempotent."""
        self._stop.set()
        self._thread.join(10)
        for pub in (self._packets, self._pixels):
            if pub is not None:
                pub.close()  # idempotent

    def __enter__(self) -> Camera:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _encoder(width: int, height: int, fps: int, gop: int, global_header: bool,
             bitrate: int | None) -> av.VideoCodecContext:
    ctx = av.CodecContext.create("libx264", "w")
    ctx.width, ctx.height, ctx.pix_fmt = width, height, "yuv420p"
    ctx.time_base = Fraction(1, 90000)
    ctx.framerate = Fraction(fps)
    options = {"preset": "ultrafast", "tune": "zerolatency", **gop_options(gop)}
    if bitrate:
        ctx.bit_rate = bitrate
    ctx.options = options
    if global_header:  # SPS/PPS in the extradata, else in-band before each key frame
        ctx.flags |= av.codec.context.Flags.global_header
    ctx.open()
    return ctx
