"""A batch of packets from a relay: ``[b"packets", <msgpack PacketBatch>, <bytes>]``.

The msgpack part says which ring the packets are of (token, generation, codec: each batch
holds packets of one ring only, so a subscriber meets a new ring at a batch's start), and
for each packet its index entry; the third part is the packets' bytes, one after another,
each as long as its entry's size. Documented in docs/protocol.md.
"""

from __future__ import annotations

from typing import Annotated

import msgspec
from msgspec import Meta

from ..errors import ProtocolError
from ..packets.layout import CORRUPT, KEYFRAME, MAX_EXTRADATA, CodecInfo
from ..packets.ring import Entry
from .fields import Count, Int64, Pts, Seq, StreamName, Token, decode

#: Bytes, at most, of a batch's msgpack part: the codec's extradata and up to MAX_ENTRIES.
MAX_HEADER = MAX_EXTRADATA + 64 * 1024
MAX_ENTRIES = 1024
Size = Annotated[int, Meta(ge=0, le=2**40)]
Flags = Annotated[int, Meta(ge=0, le=KEYFRAME | CORRUPT)]
Positive = Annotated[int, Meta(ge=1, le=2**31 - 1)]
Dimension = Annotated[int, Meta(ge=0, le=2**31 - 1)]


class WireCodec(msgspec.Struct, array_like=True, forbid_unknown_fields=True):
    """A packet ring's CodecInfo, on the wire."""

    name: Annotated[str, Meta(min_length=1, max_length=15)]
    extradata: Annotated[bytes, Meta(max_length=MAX_EXTRADATA)]
    time_base: tuple[Positive, Positive]
    width: Dimension
    height: Dimension
    bit_rate: Int64 | None = None

    @classmethod
    def of(cls, codec: CodecInfo) -> WireCodec:
        return cls(codec.name, codec.extradata, codec.time_base, codec.width, codec.height,
                   codec.bit_rate)

    def info(self) -> CodecInfo:
        try:
            return CodecInfo(self.name, self.extradata, self.time_base, self.width,
                             self.height, self.bit_rate)
        except ValueError as exc:
            raise ProtocolError(f"bad codec in a packet batch: {exc}") from None


class WireEntry(msgspec.Struct, array_like=True, forbid_unknown_fields=True):
    """One packet's index entry, and how many packets were lost just before it."""

    seq: Seq
    pts: Pts | None
    dts: Pts | None
    duration: Int64
    flags: Flags
    timestamp_ns: Count
    size: Size
    skipped: Count = 0

    @classmethod
    def of(cls, entry: Entry, skipped: int) -> WireEntry:
        flags = (KEYFRAME if entry.keyframe else 0) | (CORRUPT if entry.corrupt else 0)
        return cls(entry.seq, entry.pts, entry.dts, entry.duration, flags, entry.timestamp_ns,
                   entry.size, skipped)

    def entry(self, pos: int) -> Entry:
        """As the ring's Entry, *pos* being where its bytes start in the batch's data."""
        return Entry(self.seq, pos, self.size, bool(self.flags & KEYFRAME),
                     bool(self.flags & CORRUPT), self.pts, self.dts, self.duration,
                     self.timestamp_ns)


class PacketBatch(msgspec.Struct, forbid_unknown_fields=True):
    """Packets of one ring, in order; *number* counts the batches of this connection."""

    stream: StreamName
    number: Annotated[int, Meta(ge=0, le=2**62)]
    token: Token
    generation: Count
    codec: WireCodec
    entries: Annotated[list[WireEntry], Meta(max_length=MAX_ENTRIES)]

    def pack(self) -> bytes:
        return _ENCODER.encode(self)


_ENCODER = msgspec.msgpack.Encoder()
_BATCH = msgspec.msgpack.Decoder(PacketBatch)


def parse_batch(header: bytes | memoryview, data_size: int) -> PacketBatch:
    """A batch's msgpack part, checked against its data's size; ProtocolError if it lies."""
    batch = decode(_BATCH, header, "packet batch", MAX_HEADER)
    total = sum(e.size for e in batch.entries)
    if total != data_size:
        raise ProtocolError(f"a packet batch of {total} bytes carries {data_size}")
    seqs = [e.seq for e in batch.entries]
    if seqs != sorted(set(seqs)):
        raise ProtocolError("a packet batch's packets are not in order")
    return batch
