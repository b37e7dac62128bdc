"""The byte layout of a packet ring segment. Documented in docs/packets.md.

::

    0      header (struct HEADER below), then the codec's extradata, up to 4096
    4096   head: int64, seq + 1 of the newest complete packet (0: none)
    4104   low: int64, byte position below which the data area may be overwritten
    4160   index: index_count entries of 64 bytes, int64 each:
               [0] stamp   2*seq+1 while packet seq is written, 2*seq+2 once complete
               [1] seq     [2] pos (byte position, ever growing)   [3] size << 8 | flags
               [4] pts     [5] dts   [6] duration   [7] timestamp_ns
    data   page aligned, data_bytes long: packet bytes at pos % data_bytes, never split

Every integer is little-endian. A packet's bytes are whole iff its entry's stamp is
2*seq+2 before and after they are read and ``low`` is not beyond its pos afterwards: the
writer raises ``low`` before it overwrites any byte.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from fractions import Fraction
from typing import Protocol

from ..errors import RingError

MAGIC = b"FBPACKET"
LAYOUT_VERSION = 1
PAGE = 4096
MAX_EXTRADATA = PAGE - 256
MAX_INDEX = 1024

HEADER = struct.Struct(
    "<8s"  # magic
    "I"  # layout version
    "I"  # index count
    "Q"  # generation
    "16s"  # token
    "q"  # writer pid
    "q"  # created ns
    "Q"  # data offset
    "Q"  # data bytes
    "16s"  # codec name
    "I"  # time base num
    "I"  # time base den
    "I"  # width
    "I"  # height
    "q"  # bit rate (-1: unknown)
    "I"  # extradata length
)
EXTRADATA_OFFSET = 256
HEAD_OFFSET = PAGE
LOW_OFFSET = PAGE + 8
INDEX_OFFSET = PAGE + 64
ENTRY_FIELDS = 8
STAMP, SEQ, POS, SIZE_FLAGS, PTS, DTS, DURATION, TIMESTAMP = range(ENTRY_FIELDS)
NO_PTS = -(2**63)
KEYFRAME, CORRUPT = 1, 2


def _align(n: int, to: int = PAGE) -> int:
    return (n + to - 1) // to * to


class CodecLike(Protocol):
    """What the muxers read of a codec: a ring's CodecInfo, or one sent by a relay."""

    @property
    def name(self) -> str: ...
    @property
    def extradata(self) -> bytes: ...
    @property
    def time_base(self) -> tuple[int, int]: ...
    @property
    def width(self) -> int: ...
    @property
    def height(self) -> int: ...


@dataclass(frozen=True)
class CodecInfo:
    """What a decoder (or a muxer) needs to know of a packet stream."""

    name: str
    extradata: bytes
    time_base: tuple[int, int]
    width: int
    height: int
    bit_rate: int | None = None

    def __post_init__(self) -> None:
        name = self.name
        if not name or len(name) > 15 or not name.isascii() or not name.isprintable():
            raise ValueError(f"codec name must be 1 to 15 printable ASCII characters, "
                             f"got {name!r}")
        if len(self.extradata) > MAX_EXTRADATA:
            raise ValueError(f"extradata of {len(self.extradata)} bytes exceeds "
                             f"{MAX_EXTRADATA}")
        num, den = self.time_base
        if not (0 < num < 2**31 and 0 < den < 2**31):
            raise ValueError(f"bad time base {self.time_base}")
        if not (0 <= self.width < 2**31 and 0 <= self.height < 2**31):
            raise ValueError(f"bad picture size {self.width}x{self.height}")
        object.__setattr__(self, "extradata", bytes(self.extradata))
        object.__setattr__(self, "time_base", (int(num), int(den)))

    @property
    def fraction(self) -> Fraction:
        return Fraction(*self.time_base)


@dataclass(frozen=True)
class PacketHeader:
    """The fixed fields of a packet ring's header, and its codec."""

    generation: int
    token: bytes
    writer_pid: int
    created_ns: int
    index_count: int
    data_offset: int
    data_bytes: int
    codec: CodecInfo

    @classmethod
    def for_new_ring(cls, codec: CodecInfo, ring_bytes: int, index_count: int,
                     generation: int, token: bytes, writer_pid: int,
                     created_ns: int) -> PacketHeader:
        if not 1 <= index_count <= MAX_INDEX:
            raise ValueError(f"index entries must be between 1 and {MAX_INDEX}, "
                             f"got {index_count}")
        if ring_bytes < PAGE:
            raise ValueError(f"a packet ring needs at least {PAGE} bytes, got {ring_bytes}")
        data_offset = _align(INDEX_OFFSET + 64 * index_count)
        return cls(generation, token, writer_pid, created_ns, index_count, data_offset,
                   _align(ring_bytes), codec)

    @property
    def segment_size(self) -> int:
        return self.data_offset + self.data_bytes

    def pack(self) -> bytes:
        c = self.codec
        fixed = HEADER.pack(
            MAGIC, LAYOUT_VERSION, self.index_count, self.generation, self.token,
            self.writer_pid, self.created_ns, self.data_offset, self.data_bytes,
            c.name.encode(), *c.time_base, c.width, c.height,
            -1 if c.bit_rate is None else c.bit_rate, len(c.extradata))
        return fixed.ljust(EXTRADATA_OFFSET, b"\0") + c.extradata

    @classmethod
    def unpack(cls, buf, size: int) -> PacketHeader:
        """Parse and sanity-check the header of a segment of *size* bytes."""
        if size < INDEX_OFFSET:
            raise RingError(f"segment of {size} bytes is too small to be a packet ring")
        (magic, version, index_count, generation, token, pid, created, data_offset,
         data_bytes, name, num, den, width, height, bit_rate, extra_len) = \
            HEADER.unpack_from(buf, 0)
        if magic != MAGIC:
            raise RingError("not a framebus packet ring (bad magic)")
        if version != LAYOUT_VERSION:
            raise RingError(f"packet ring layout version {version}, this framebus reads "
                            f"{LAYOUT_VERSION}")
        if extra_len > MAX_EXTRADATA:
            raise RingError("corrupt packet ring header: extradata too long")
        try:
            codec = CodecInfo(name.rstrip(b"\0").decode(),
                              bytes(buf[EXTRADATA_OFFSET:EXTRADATA_OFFSET + extra_len]),
                              (num, den), width, height, None if bit_rate < 0 else bit_rate)
        except (ValueError, UnicodeDecodeError) as exc:
            raise RingError(f"corrupt packet ring header: {exc}") from exc
        header = cls(generation, token, pid, created, index_count, data_offset, data_bytes,
                     codec)
        if (not 1 <= index_count <= MAX_INDEX or data_bytes < 1
                or data_offset < INDEX_OFFSET + 64 * index_count
                or header.segment_size > size):
            raise RingError("corrupt packet ring header: sizes do not add up")
        return header
