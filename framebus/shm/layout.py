"""The byte layout of a ring segment. Documented in docs/ring.md.

::

    0     header (fixed fields, struct HEADER below)
    192   head: int64, sequence number + 1 of the newest complete frame (0: none)
    256   slot table: one 64-byte line per slot, int64 each:
              [0] stamp   2*seq+1 while seq is being written, 2*seq+2 once complete
              [1] seq     [2] pts (NO_PTS: none)    [3] timestamp_ns    [4..7] reserved
    data  page aligned; slot i at data + i*slot_stride, slot_stride page aligned

Every integer is little-endian. Readers map the whole segment read-only.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np

from ..errors import RingError

MAGIC = b"FRAMEBUS"
LAYOUT_VERSION = 1
MAX_NDIM = 4
PAGE = 4096

HEADER = struct.Struct(
    "<8s"  # magic
    "I"  # layout version
    "I"  # data offset (bytes before slot 0's pixels)
    "Q"  # generation
    "16s"  # token: random, new for every ring
    "q"  # writer pid
    "q"  # created, ns since the epoch
    "I"  # slot count
    "I"  # ndim
    "4Q"  # shape, zero padded
    "16s"  # numpy dtype string, e.g. "|u1"
    "16s"  # pixel format, e.g. "bgr24"
    "Q"  # frame bytes
    "Q"  # slot stride
)
HEAD_OFFSET = 192
SLOT_TABLE_OFFSET = 256
SLOT_META_SIZE = 64
SLOT_META_FIELDS = SLOT_META_SIZE // 8
STAMP, SEQ, PTS, TIMESTAMP = range(4)
#: The pts field of a frame that has none: FFmpeg's AV_NOPTS_VALUE, so that no real pts
#: (0 included) is mistaken for a missing one.
NO_PTS = -(2**63)


def _align(n: int, to: int = PAGE) -> int:
    return (n + to - 1) // to * to


@dataclass(frozen=True)
class Geometry:
    """What one frame looks like: array shape, element type and pixel format."""

    shape: tuple[int, ...]
    dtype: np.dtype
    fmt: str

    @classmethod
    def of(cls, shape, dtype, fmt: str) -> Geometry:
        shape = tuple(int(n) for n in shape)
        if not 1 <= len(shape) <= MAX_NDIM or any(n <= 0 for n in shape):
            raise ValueError(f"shape must have 1 to {MAX_NDIM} positive dimensions, got {shape}")
        dtype = np.dtype(dtype)
        if dtype.hasobject or dtype.fields is not None or len(dtype.str) > 15:
            raise ValueError(f"unsupported dtype {dtype}")
        if not fmt or len(fmt.encode()) > 15 or not fmt.isascii() or not fmt.isprintable():
            raise ValueError("pixel format must be 1 to 15 printable ASCII characters, "
                             f"got {fmt!r}")
        return cls(shape, dtype, fmt)

    @property
    def frame_bytes(self) -> int:
        return int(np.prod(self.shape)) * self.dtype.itemsize


@dataclass(frozen=True)
class Header:
    """The fixed fields of a ring's header."""

    generation: int
    token: bytes
    writer_pid: int
    created_ns: int
    slot_count: int
    geometry: Geometry
    data_offset: int
    slot_stride: int

    @classmethod
    def for_new_ring(cls, geometry: Geometry, slots: int, generation: int, token: bytes,
                     writer_pid: int, created_ns: int) -> Header:
        if not 1 <= slots <= 1024:
            raise ValueError(f"slots must be between 1 and 1024, got {slots}")
        data_offset = _align(SLOT_TABLE_OFFSET + SLOT_META_SIZE * slots)
        return cls(generation, token, writer_pid, created_ns, slots, geometry,
                   data_offset, _align(geometry.frame_bytes))

    @property
    def segment_size(self) -> int:
        return self.data_offset + self.slot_count * self.slot_stride

    def pack(self) -> bytes:
        g = self.geometry
        shape = list(g.shape) + [0] * (MAX_NDIM - len(g.shape))
        return HEADER.pack(
            MAGIC, LAYOUT_VERSION, self.data_offset, self.generation, self.token,
            self.writer_pid, self.created_ns, self.slot_count, len(g.shape), *shape,
            g.dtype.str.encode(), g.fmt.encode(), g.frame_bytes, self.slot_stride,
        )

    @classmethod
    def unpack(cls, buf, size: int) -> Header:
        """Parse and sanity-check the header of a segment of *size* bytes."""
        if size < SLOT_TABLE_OFFSET:
            raise RingError(f"segment of {size} bytes is too small to be a ring")
        (magic, version, data_offset, generation, token, pid, created, slots, ndim,
         *rest) = HEADER.unpack_from(buf, 0)
        shape, (dtype, fmt, frame_bytes, stride) = rest[:MAX_NDIM], rest[MAX_NDIM:]
        if magic != MAGIC:
            raise RingError("not a framebus ring (bad magic)")
        if version != LAYOUT_VERSION:
            raise RingError(f"ring layout version {version}, this framebus reads {LAYOUT_VERSION}")
        try:
            geometry = Geometry.of(shape[:ndim], dtype.rstrip(b"\0").decode(),
                                   fmt.rstrip(b"\0").decode())
        except (ValueError, TypeError, UnicodeDecodeError) as exc:
            raise RingError(f"corrupt ring header: {exc}") from exc
        header = cls(generation, token, pid, created, slots, geometry, data_offset, stride)
        if (frame_bytes != geometry.frame_bytes or stride < frame_bytes
                or data_offset < SLOT_TABLE_OFFSET + SLOT_META_SIZE * slots
                or header.segment_size > size):
            raise RingError("corrupt ring header: sizes do not add up")
        return header
