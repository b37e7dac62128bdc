"""Packets put back together into whole pictures before they are muxed.

A file demuxes one packet per picture, but FFmpeg's RTSP demuxer hands a picture over in
as many packets as the camera's RTP made of it: a 1080p key frame of two slices, each
fragmented over many RTP packets, comes as two packets with the same pts and dts (and a
camera's first packet may carry no timestamp at all). A muxer takes one sample per
timestamp: MP4's refuses a dts equal to the last one, and a Remuxer would take it for time
running backwards. So a packet is held until the next one shows whether it continues the
same picture, and the parts of a picture go out as one sample, their bytes concatenated
(Annex B parts concatenate into an Annex B picture; MP4's muxer converts it to
length-prefixed NAL units as it converts any Annex B packet).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class Whole:
    """A picture: its bytes and the timing and flags of its packets (PacketLike)."""

    data: bytes
    pts: int | None
    dts: int | None
    duration: int
    keyframe: bool
    codec: Any  # the CodecLike of the ring it came from
    wall: float | None

    def absorb(self, data: bytes, packet, wall: float | None) -> None:
        """The next part of the same picture (or, for a part without timing, the picture
        it belongs to)."""
        self.data += bytes(data)
        if self.pts is None and self.dts is None:
            self.pts, self.dts, self.duration = packet.pts, packet.dts, packet.duration
        self.keyframe = self.keyframe or bool(packet.keyframe)
        self.duration = max(self.duration, packet.duration)
        self.wall = self.wall if self.wall is not None else wall


class Assembler:
    """Feed packets with push(); whole pictures come out, one call late; flush() at the end;
    drop() forgets the picture being put together."""

    def __init__(self) -> None:
        self._pending: Whole | None = None

    def push(self, data: bytes, packet, codec,
             wall: float | None = None) -> tuple[Whole | None, Whole | None]:
        """Take a packet: (the previous picture, finished, if this packet starts another;
        the new picture it starts, else None)."""
        pending = self._pending
        if (pending is not None and (pending.codec is codec or pending.codec == codec)
                and _continues(pending, packet)):
            pending.absorb(data, packet, wall)
            return None, None
        self._pending = Whole(bytes(data), packet.pts, packet.dts, packet.duration,
                              bool(packet.keyframe), codec, wall)
        return pending, self._pending

    def drop(self) -> None:
        self._pending = None

    def flush(self) -> Whole | None:
        pending, self._pending = self._pending, None
        return pending


def _continues(pending: Whole, packet) -> bool:
    if pending.pts is None and pending.dts is None:
        return True  # an untimed part: the start of the picture the next packet times
    return (packet.pts, packet.dts) == (pending.pts, pending.dts)
