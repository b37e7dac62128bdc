"""Packet: one compressed packet as a subscriber gets it, in place in the packet ring."""

from __future__ import annotations

import builtins
from fractions import Fraction

from .layout import CodecInfo
from .ring import Entry, PacketRingReader


class Packet:
    """A packet of stream *stream*. ``data`` is a read-only view of the ring (zero copies),
    valid until the writer laps it: check ``valid()`` after using it, or take ``bytes()``,
    a copy checked whole (FrameOverwritten if it was lapped)."""

    __slots__ = ("_entry", "_ring", "data", "skipped", "stream")

    def __init__(self, stream: str, ring: PacketRingReader, entry: Entry,
                 skipped: int = 0) -> None:
        self.stream = stream
        self._ring = ring
        self._entry = entry
        self.data = ring.view(entry)
        #: Packets missed just before this one.
        self.skipped = skipped

    def valid(self) -> bool:
        """Whether ``data`` still holds this packet, whole."""
        return self._ring.intact(self._entry)

    def bytes(self) -> builtins.bytes:
        return self._ring.copy(self._entry)

    @property
    def seq(self) -> int:
        return self._entry.seq

    @property
    def pts(self) -> int | None:
        return self._entry.pts

    @property
    def dts(self) -> int | None:
        return self._entry.dts

    @property
    def duration(self) -> int:
        return self._entry.duration

    @property
    def keyframe(self) -> bool:
        return self._entry.keyframe

    @property
    def corrupt(self) -> bool:
        return self._entry.corrupt

    @property
    def timestamp_ns(self) -> int:
        """When the producer published it, ns since the Unix epoch."""
        return self._entry.timestamp_ns

    @property
    def size(self) -> int:
        return self._entry.size

    @property
    def generation(self) -> int:
        return self._ring.generation

    @property
    def token(self) -> builtins.bytes:
        return self._ring.token

    @property
    def codec(self) -> CodecInfo:
        return self._ring.codec

    @property
    def time_base(self) -> Fraction:
        return self._ring.codec.fraction

    def __len__(self) -> int:
        return self._entry.size

    def __repr__(self) -> str:
        key = " key" if self.keyframe else ""
        return (f"<Packet {self.stream} seq={self.seq} pts={self.pts} "
                f"{self.size} B{key}>")
