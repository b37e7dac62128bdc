"""Decoding a remote stream's packets into frames, for framebus/paths/decoded.py: PyAV's
decoder for one ring's codec, remade when the ring or its codec changes; pictures converted
to the pixel stream's format and size as the decoder worker converts its own."""

from __future__ import annotations

import logging
from fractions import Fraction
from typing import cast

import av
import numpy as np
from av.video.codeccontext import VideoCodecContext

from ..decoder.convert import Converter
from ..errors import FramebusError
from ..frame import Frame
from ..packets.layout import CodecInfo
from ..packets.packet import Packet
from ..protocol.descriptor import Descriptor

log = logging.getLogger("framebus.subscriber")


class Decoder:
    """PyAV's decoder for one ring's codec, remade when the ring or its codec changes."""

    def __init__(self, name: str, fmt: str, size: tuple[int, int] | None) -> None:
        self._name = name
        self._converter = Converter(fmt, size)
        self._context: VideoCodecContext | None = None
        self._ring: tuple[bytes, CodecInfo] | None = None
        self._await_key = True
        self._packets: dict[int | None, Packet] = {}  # by pts: which packet a picture is

    def decode(self, packet: Packet) -> list[Frame]:
        if (packet.token, packet.codec) != self._ring:
            self._open(packet)
        if packet.skipped:
            self._await_key = True  # its references may be among the lost
        if self._await_key and not packet.keyframe:
            return []
        self._await_key = False
        assert self._context is not None
        av_packet = av.Packet(bytes(packet.data))  # PyAV takes bytes; packets are small
        av_packet.pts, av_packet.dts = packet.pts, packet.dts
        self._packets[packet.pts] = packet
        try:
            pictures = self._context.decode(av_packet)
        except av.error.FFmpegError as exc:
            log.warning("%s: packet %d does not decode: %s", self._name, packet.seq, exc)
            self._await_key = True
            return []
        return [self._frame(p, packet) for p in pictures]

    def _open(self, packet: Packet) -> None:
        codec = packet.codec
        try:
            context = cast(VideoCodecContext, av.CodecContext.create(codec.name, "r"))
        except (av.error.FFmpegError, ValueError) as exc:
            raise FramebusError(f"{self._name}: its packets are {codec.name}, which this "
                                f"PyAV cannot decode: {exc}") from None
        if codec.extradata:
            context.extradata = codec.extradata
        self._context, self._ring = context, (packet.token, codec)
        self._await_key, self._packets = True, {}

    def _frame(self, picture: av.VideoFrame, last: Packet) -> Frame:
        packet = self._packets.pop(picture.pts, last)
        if len(self._packets) > 64:  # pictures a decoder never gave back: forget them
            self._packets.clear()
        pixels = np.empty(self._converter.shape_for(picture), np.uint8)
        self._converter.into(picture, pixels)
        pixels.flags.writeable = False
        desc = Descriptor(stream=self._name, generation=packet.generation, token=packet.token,
                          seq=packet.seq, slot=0, pts=packet.pts,
                          time_base=Fraction(*packet.codec.time_base),
                          timestamp_ns=packet.timestamp_ns, shape=pixels.shape,
                          dtype=pixels.dtype.str, fmt=self._converter.fmt)
        return Frame(desc, 0, pixels=pixels)
