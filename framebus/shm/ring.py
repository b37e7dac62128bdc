"""A ring of frame slots in one shared-memory segment.

One writer, any number of readers, and no locks: each slot carries a stamp
that works as a sequence lock. The writer sets it odd before touching the
pixels and even (encoding the frame's sequence number) after; a reader that
sees the same even stamp before and after reading knows the frame is whole.
The writer never waits for readers: a slow reader finds the stamp changed.

The stamp and head accesses are the ordering points: they go through order.py
(C11 acquire and release, compiled), so the ring is correct on weakly ordered
CPUs such as ARM as well as on x86-64; docs/ring.md gives the argument.
"""

from __future__ import annotations

import logging
import mmap
import os
import secrets
import time
from typing import Any, NamedTuple

import numpy as np
import posix_ipc

from ..errors import FrameOverwritten, RingError, StreamInUse
from . import order, segment
from .layout import (
    HEAD_OFFSET,
    NO_PTS,
    PTS,
    SEQ,
    SLOT_META_FIELDS,
    SLOT_TABLE_OFFSET,
    STAMP,
    TIMESTAMP,
    Geometry,
    Header,
)

log = logging.getLogger(__name__)


class SlotRecord(NamedTuple):
    """The writer's own record of the frame in a slot."""

    seq: int
    pts: int | None
    timestamp_ns: int


def stamp_writing(seq: int) -> int:
    return 2 * seq + 1


def stamp_complete(seq: int) -> int:
    return 2 * seq + 2


class Ring:
    """What writers and readers share: the mapping, the header and the slot table."""

    def __init__(self, name: str, mm: mmap.mmap, header: Header) -> None:
        order.require_ordering()
        self.name = name
        self.header = header
        self._mm = mm
        self._head = np.ndarray((1,), np.int64, mm, HEAD_OFFSET)
        self._meta = np.ndarray((header.slot_count, SLOT_META_FIELDS), np.int64, mm,
                                SLOT_TABLE_OFFSET)
        # The words the ordered accesses go through, by address: valid while the arrays
        # above keep the mapping alive, and dropped with them in close() (an address of 0
        # is refused by order.py, so a closed ring raises instead of reading freed memory).
        self._head_at: int = self._head.ctypes.data
        table, row = self._meta.ctypes.data, SLOT_META_FIELDS * 8
        self._stamp_at: list[int] = [table + i * row + STAMP * 8
                                     for i in range(header.slot_count)]
        self._slots = [
            np.ndarray(header.geometry.shape, header.geometry.dtype, mm,
                       header.data_offset + i * header.slot_stride)
            for i in range(header.slot_count)
        ]

    @property
    def token(self) -> bytes:
        return self.header.token

    @property
    def generation(self) -> int:
        return self.header.generation

    @property
    def geometry(self) -> Geometry:
        return self.header.geometry

    @property
    def slot_count(self) -> int:
        return self.header.slot_count

    @property
    def head(self) -> int:
        """Sequence number of the newest complete frame, or -1 if none yet."""
        return order.load(self._head_at) - 1

    def slot_of(self, seq: int) -> int:
        return seq % self.header.slot_count

    def holds(self, slot: int, seq: int) -> bool:
        """Whether *slot* holds frame *seq*, complete and not yet reused."""
        return order.load(self._stamp_at[slot]) == stamp_complete(seq)

    def slot_info(self, slot: int) -> SlotRecord:
        """The frame's seq, pts (None if it had none) and timestamp, as the writer recorded
        them for *slot*."""
        row = self._meta[slot]
        pts = int(row[PTS])
        return SlotRecord(int(row[SEQ]), None if pts == NO_PTS else pts, int(row[TIMESTAMP]))

    def view(self, slot: int) -> np.ndarray:
        """The pixels of *slot*, in place (read-only for readers)."""
        return self._slots[slot]

    def close(self) -> None:
        """Drop this process's mapping, unless numpy views still use it.

        Views handed to callers keep the memory alive; the mapping then goes
        when the last of them is garbage collected.
        """
        self._slots = []
        self._head = self._meta = None
        self._head_at, self._stamp_at = 0, []
        try:
            self._mm.close()
        except BufferError:
            pass


class RingWriter(Ring):
    """The producer's side: creates the segment and owns it until close()."""

    @classmethod
    def create(cls, name: str, geometry: Geometry, slots: int = 8,
               generation: int = 0) -> RingWriter:
        """Create ring *name*, reclaiming a stale segment left by a dead writer.

        Raises StreamInUse if a live process still writes a ring of that name,
        ShmFull if shared memory has no room.
        """
        header = Header.for_new_ring(geometry, slots, generation, secrets.token_bytes(16),
                                     os.getpid(), time.time_ns())
        for attempt in range(2):
            try:
                mm = segment.create(name, header.segment_size)
                break
            except posix_ipc.ExistentialError:
                if attempt:
                    raise
                reclaim_stale(name)
        mm[: len(header.pack())] = header.pack()
        log.debug("created ring %s: %d x %s %s, %.1f MiB", name, slots, geometry.shape,
                  geometry.fmt, header.segment_size / 2**20)
        return cls(name, mm, header)

    def begin(self, seq: int) -> np.ndarray:
        """Mark the slot of frame *seq* as being written and return its pixels."""
        slot = self.slot_of(seq)
        order.begin(self._stamp_at[slot], stamp_writing(seq))
        return self._slots[slot]

    def commit(self, seq: int, pts: int | None, timestamp_ns: int) -> int:
        """Mark frame *seq* complete; returns its slot."""
        slot = self.slot_of(seq)
        row = self._meta[slot]
        row[SEQ] = seq
        row[PTS] = NO_PTS if pts is None else pts
        row[TIMESTAMP] = timestamp_ns
        # Release: the pixels and the record above are visible to whoever reads the stamp,
        # and the stamp to whoever reads the head.
        order.publish(self._stamp_at[slot], stamp_complete(seq))
        order.publish(self._head_at, seq + 1)
        return slot

    def close(self, unlink: bool = True) -> None:
        if unlink:
            segment.unlink(self.name)
        super().close()


class RingReader(Ring):
    """A consumer's read-only mapping of a ring."""

    @classmethod
    def open(cls, name: str) -> RingReader:
        mm = segment.open_readonly(name)
        try:
            header = Header.unpack(mm, len(mm))
        except Exception:
            mm.close()
            raise
        return cls(name, mm, header)

    def copy(self, slot: int, seq: int, out: np.ndarray | None = None) -> np.ndarray:
        """Copy frame *seq* out of *slot*; FrameOverwritten unless it stayed whole."""
        if not self.holds(slot, seq):
            raise FrameOverwritten(f"frame {seq} was overwritten before it was copied")
        if out is None:
            out = self._slots[slot].copy()
        else:
            np.copyto(out, self._slots[slot])
        if not self.holds(slot, seq):
            raise FrameOverwritten(f"frame {seq} was overwritten while it was copied")
        return out


def read_header(name: str, kind: Any = Header) -> Any:
    """The header of segment *name*, or None if it is missing or not a ring of *kind* (the
    header class: a pixel ring's, or framebus/packets' PacketHeader)."""
    try:
        mm = segment.open_readonly(name)
    except RingError:
        return None
    try:
        return kind.unpack(mm, len(mm))
    except RingError:
        return None
    finally:
        mm.close()


def reclaim(name: str, token: bytes | None = None, kind: Any = Header) -> bool:
    """Unlink ring *name* (of header class *kind*) if its writer is dead (and, if given, its
    token matches).

    This is how a SIGKILLed producer's segment is cleaned up, by the broker or
    by the next producer of the same name.
    """
    header = read_header(name, kind)
    if header is None and token is not None:
        return False  # not the ring we were told about: leave it alone
    if header is not None:
        if token is not None and header.token != token:
            return False
        if segment.pid_alive(header.writer_pid) and header.writer_pid != os.getpid():
            return False
    removed = segment.unlink(name)
    if removed:
        log.info("reclaimed stale ring %s (writer pid %s is gone)", name,
                 header.writer_pid if header else "unknown")
    return removed


def reclaim_stale(name: str, kind: Any = Header) -> None:
    """Before creating ring *name*: unlink what a dead writer left there; StreamInUse if a
    live one still writes it."""
    header = read_header(name, kind)
    if (header is not None and header.writer_pid != os.getpid()
            and segment.pid_alive(header.writer_pid)):
        raise StreamInUse(f"ring {name} is in use by live process {header.writer_pid}")
    reclaim(name, kind=kind)
