"""A ring of compressed packets in one shared-memory segment, sized in bytes.

One writer, any number of readers, no locks. Each packet has an index entry whose stamp
is a sequence lock, exactly as a pixel slot's (docs/ring.md); its bytes lie contiguous at
``pos % data_bytes`` in the data area (a packet that would run past the end starts at the
next wrap instead). Before the writer overwrites a byte it raises ``low``, the byte
position below which data may be gone, so a reader that finds its packet's pos still at or
above ``low`` after reading knows the bytes were whole. Every stamp, head and low access
goes through framebus/shm/order.py, as the pixel ring's do: C11 acquire/release, so the
ring is correct on weakly ordered CPUs too (docs/ring.md, "Memory ordering").
"""

from __future__ import annotations

import logging
import mmap
import os
import secrets
import time
from typing import NamedTuple

import numpy as np
import posix_ipc

from ..errors import FrameOverwritten
from ..shm import order, segment
from ..shm import ring as pixel_ring
from .layout import (
    CORRUPT,
    DTS,
    DURATION,
    ENTRY_FIELDS,
    HEAD_OFFSET,
    INDEX_OFFSET,
    KEYFRAME,
    LOW_OFFSET,
    NO_PTS,
    POS,
    PTS,
    SEQ,
    SIZE_FLAGS,
    STAMP,
    TIMESTAMP,
    CodecInfo,
    PacketHeader,
)

log = logging.getLogger(__name__)


class Entry(NamedTuple):
    """The writer's record of one packet, as read from the index."""

    seq: int
    pos: int
    size: int
    keyframe: bool
    corrupt: bool
    pts: int | None
    dts: int | None
    duration: int
    timestamp_ns: int


def _opt(value: int) -> int | None:
    return None if value == NO_PTS else value


class PacketRing:
    """What writer and readers share: the mapping, the header, the index and the data."""

    def __init__(self, name: str, mm: mmap.mmap, header: PacketHeader) -> None:
        self.name = name
        self.header = header
        self._mm = mm
        self._words = np.ndarray((2,), np.int64, mm, HEAD_OFFSET)  # head, low
        assert LOW_OFFSET == HEAD_OFFSET + 8
        self._index = np.ndarray((header.index_count, ENTRY_FIELDS), np.int64, mm,
                                 INDEX_OFFSET)
        self._data = memoryview(mm)[header.data_offset:header.data_offset + header.data_bytes]
        # The ordered words by address, valid while the arrays above keep the mapping alive.
        order.require_ordering()
        self._head_at = self._words.ctypes.data
        self._low_at = self._head_at + 8
        table = self._index.ctypes.data
        self._stamp_at = [table + i * ENTRY_FIELDS * 8 + STAMP * 8
                          for i in range(header.index_count)]

    @property
    def token(self) -> bytes:
        return self.header.token

    @property
    def generation(self) -> int:
        return self.header.generation

    @property
    def codec(self) -> CodecInfo:
        return self.header.codec

    @property
    def head(self) -> int:
        """Seq of the newest complete packet, or -1 if none yet."""
        return order.load(self._head_at) - 1

    @property
    def low(self) -> int:
        return order.load(self._low_at)

    def entry_of(self, seq: int) -> int:
        return seq % self.header.index_count

    def holds(self, seq: int) -> bool:
        """Whether packet *seq*'s entry is complete and not yet reused."""
        return order.load(self._stamp_at[self.entry_of(seq)]) == 2 * seq + 2

    def entry(self, seq: int) -> Entry | None:
        """Packet *seq*'s record, read between two stamp checks; None if it is not there."""
        slot = self.entry_of(seq)
        if order.load(self._stamp_at[slot]) != 2 * seq + 2:
            return None
        values = [int(v) for v in self._index[slot]]
        if order.load(self._stamp_at[slot]) != 2 * seq + 2 or values[SEQ] != seq:
            return None
        size, flags = values[SIZE_FLAGS] >> 8, values[SIZE_FLAGS] & 0xFF
        return Entry(seq, values[POS], size, bool(flags & KEYFRAME), bool(flags & CORRUPT),
                     _opt(values[PTS]), _opt(values[DTS]), values[DURATION],
                     values[TIMESTAMP])

    def intact(self, entry: Entry) -> bool:
        """Whether *entry*'s bytes are still whole (check after reading them)."""
        return self.holds(entry.seq) and self.low <= entry.pos

    def view(self, entry: Entry) -> memoryview:
        """Packet *entry*'s bytes in place, read-only (valid until lapped: see intact)."""
        start = entry.pos % self.header.data_bytes
        return self._data[start:start + entry.size].toreadonly()

    def close(self) -> None:
        """Drop this process's mapping, unless views handed out still use it (then it goes
        with the last of them)."""
        self._index = self._words = None
        self._head_at, self._low_at, self._stamp_at = 0, 0, []
        self._data = None  # type: ignore[assignment]
        try:
            self._mm.close()
        except BufferError:
            pass


class PacketRingWriter(PacketRing):
    """The producer's side: creates the segment and owns it until close()."""

    def __init__(self, name: str, mm: mmap.mmap, header: PacketHeader) -> None:
        super().__init__(name, mm, header)
        self._next_pos = 0

    @classmethod
    def create(cls, name: str, codec: CodecInfo, ring_bytes: int, index_count: int = 1024,
               generation: int = 0) -> PacketRingWriter:
        """Create packet ring *name*, reclaiming a stale one left by a dead writer.

        Raises StreamInUse if a live process still writes it, ShmFull if shared memory has
        no room (the segment is then gone again).
        """
        header = PacketHeader.for_new_ring(codec, ring_bytes, index_count, generation,
                                           secrets.token_bytes(16), os.getpid(),
                                           time.time_ns())
        for attempt in range(2):
            try:
                mm = segment.create(name, header.segment_size)
                break
            except posix_ipc.ExistentialError:
                if attempt:
                    raise
                _reclaim_stale(name)
        packed = header.pack()
        mm[:len(packed)] = packed
        log.debug("created packet ring %s: %s, %.1f MiB", name, codec.name,
                  header.segment_size / 2**20)
        return cls(name, mm, header)

    def write(self, seq: int, data, *, pts: int | None, dts: int | None, duration: int,
              keyframe: bool, corrupt: bool, timestamp_ns: int) -> None:
        """Write packet *seq* and commit it."""
        size = len(data)
        capacity = self.header.data_bytes
        if size > capacity:
            raise ValueError(f"a packet of {size} bytes does not fit a ring of {capacity}")
        pos = self._next_pos
        if pos % capacity + size > capacity:
            pos += capacity - pos % capacity  # never split a packet: start at the wrap
        slot = self.entry_of(seq)
        row = self._index[slot]
        order.begin(self._stamp_at[slot], 2 * seq + 1)
        # Bytes up to pos+size-capacity are about to be overwritten: say so first (begin():
        # the store, then a fence before the bytes that follow).
        low = pos + size - capacity
        if low > int(self._words[1]):
            order.begin(self._low_at, low)
        start = pos % capacity
        self._data[start:start + size] = data
        row[SEQ] = seq
        row[POS] = pos
        row[SIZE_FLAGS] = size << 8 | (KEYFRAME if keyframe else 0) | (CORRUPT if corrupt else 0)
        row[PTS] = NO_PTS if pts is None else pts
        row[DTS] = NO_PTS if dts is None else dts
        row[DURATION] = duration
        row[TIMESTAMP] = timestamp_ns
        order.publish(self._stamp_at[slot], 2 * seq + 2)
        order.publish(self._head_at, seq + 1)
        self._next_pos = pos + size

    def close(self, unlink: bool = True) -> None:
        if unlink:
            segment.unlink(self.name)
        super().close()


class PacketRingReader(PacketRing):
    """A consumer's read-only mapping of a packet ring."""

    @classmethod
    def open(cls, name: str) -> PacketRingReader:
        mm = segment.open_readonly(name)
        try:
            header = PacketHeader.unpack(mm, len(mm))
        except Exception:
            mm.close()
            raise
        return cls(name, mm, header)

    def copy(self, entry: Entry) -> bytes:
        """Packet *entry*'s bytes, copied; FrameOverwritten unless they stayed whole."""
        if not self.intact(entry):
            raise FrameOverwritten(f"packet {entry.seq} was overwritten before it was copied")
        data = bytes(self.view(entry))
        if not self.intact(entry):
            raise FrameOverwritten(f"packet {entry.seq} was overwritten while it was copied")
        return data


def read_header(name: str) -> PacketHeader | None:
    """The header of packet ring *name*, or None if it is missing or not a packet ring."""
    header: PacketHeader | None = pixel_ring.read_header(name, PacketHeader)
    return header


def reclaim(name: str, token: bytes | None = None) -> bool:
    """Unlink packet ring *name* if its writer is dead (and, if given, its token matches)."""
    return pixel_ring.reclaim(name, token, PacketHeader)


def _reclaim_stale(name: str) -> None:
    pixel_ring.reclaim_stale(name, PacketHeader)
