"""A decoder worker's packet stream: the source's compressed packets, as PyAV demuxed them,
published beside the pixel stream under the same name (framebus/packets/).

The packets flow whatever ``--decode`` says; a file's are paced at its own timing (by dts),
as its frames are, so that a worker that decodes nothing still plays in real time.
"""

from __future__ import annotations

import logging
import threading
from fractions import Fraction

import av

from ..packets import CodecInfo, PacketPublisher
from ..packets.publisher import RING_BYTES

log = logging.getLogger(__name__)

#: The figure that says the decode mode (figures are numbers): `ls` and `stat` name it.
DECODE_MODES = ("always", "demand", "keyframes")


def codec_of(stream: av.video.stream.VideoStream) -> CodecInfo:
    ctx = stream.codec_context
    tb = stream.time_base or Fraction(1, 90000)
    return CodecInfo(ctx.name[:15], bytes(ctx.extradata or b""), (tb.numerator, tb.denominator),
                     ctx.width or 0, ctx.height or 0, ctx.bit_rate or None)


class PacketSide:
    """Publishes a worker's packets; made when the first packet comes."""

    def __init__(self, name: str, broker: str | None, pacer, stop: threading.Event) -> None:
        self.name = name
        self.broker = broker
        self.publisher: PacketPublisher | None = None
        self._pacer = pacer  # None: as they come (live sources, --fast)
        self._stop = stop
        self.offset = 0  # added to pts and dts on each --loop, as to the frames'
        self.failed = False
        #: The pts just past the last packet published (with the offset); None before one.
        self.end: int | None = None
        self._stream: av.video.stream.VideoStream | None = None

    def publish(self, packet: av.Packet, stream: av.video.stream.VideoStream) -> None:
        pub = self._publisher(stream)
        if pub is None:
            return
        tb = packet.time_base or stream.time_base
        when = packet.dts if packet.dts is not None else packet.pts
        if self._pacer is not None and when is not None and tb is not None:
            self._pacer.wait_until(float((when + self.offset) * tb), self._stop)
        pts = None if packet.pts is None else packet.pts + self.offset
        if pts is not None:  # where a --loop goes on, even when no frame was decoded
            after = pts + max(1, packet.duration or 0)
            self.end = after if self.end is None else max(self.end, after)
        dts = None if packet.dts is None else packet.dts + self.offset
        try:
            pub.publish(packet, pts=pts, dts=dts, duration=packet.duration or 0,
                        keyframe=packet.is_keyframe, corrupt=packet.is_corrupt)
        except ValueError as exc:  # a packet larger than the whole ring
            log.warning("%s: packet not published: %s", self.name, exc)

    def _publisher(self, stream: av.video.stream.VideoStream) -> PacketPublisher | None:
        if stream is self._stream:
            return self.publisher
        self._stream = stream  # a new input (reopened, looped): its codec may differ
        codec = codec_of(stream)
        if self.publisher is None and not self.failed:
            try:
                self.publisher = PacketPublisher(self.name, codec, broker=self.broker,
                                                 ring_bytes=_ring_bytes(codec))
            except Exception as exc:
                # Pixels are what the worker is for: a packet stream that cannot be made
                # (no room in /dev/shm, say) is said once, and the pixels go on.
                log.error("%s: no packet stream: %s", self.name, exc)
                self.failed = True
                return None
            log.info("%s: publishing %s packets", self.name, codec.name)
        elif self.publisher is not None:
            self.publisher.set_codec(codec)  # the same: nothing; changed: a new generation
        return self.publisher

    def close(self) -> None:
        if self.publisher is not None:
            self.publisher.close()


def _ring_bytes(codec: CodecInfo) -> int:
    """Room for about 16 s of the stream: at least RING_BYTES, more for a high bit rate (an
    MJPEG camera's, say)."""
    if codec.bit_rate:
        return max(RING_BYTES, min(256 * 2**20, codec.bit_rate * 2))
    if codec.name == "mjpeg":
        return 64 * 2**20
    return RING_BYTES
