"""A ring read by wake-ups: the writer bumps this reader's eventfd after each frame
(framebus/shm/wake.py), and the reader takes the frames' facts from the slot table.

What a frame is (stream, generation, geometry, time base) comes from the ring's last
descriptor the reader verified, the template; which frame, from the writer's record in the
slot table, read between two looks at the stamp, as for the history of mode "all". No
message is believed here at all: the ring is the only source.
"""

from __future__ import annotations

import msgspec

from ..frame import Frame
from ..protocol.descriptor import Descriptor
from ..shm import RingReader
from ..shm.wake import WakeChannel
from .counts import Counts


class Woken:
    """Frames of one ring, found by looking at its head after each wake-up.

    Mode "latest" takes the head; mode "all" walks seq from the last one returned up to the
    head, and a frame lapped before it was taken is a gap (Counts.seen), never stale.
    """

    def __init__(self, channel: WakeChannel, ring: RingReader, template: Descriptor,
                 counts: Counts, latest: bool) -> None:
        self.channel = channel
        self.ring = ring
        self.template = template
        self._counts = counts
        self._latest = latest
        self._next = template.seq + 1  # the template's frame was returned already

    @property
    def token(self) -> bytes:
        return self.template.token

    def take(self) -> Frame | None:
        """The next frame if the ring has one. None only after the counter was read, then
        the head looked at: a frame committed after that look bumps the counter again, so
        a caller that sleeps on the eventfd when this returns None never misses one. (While
        frames are there the counter is left alone: one syscall less each, and the next
        wake-up may be spurious, which is allowed.)"""
        frame = self._walk()
        if frame is None:
            self.channel.clear()
            frame = self._walk()
        return frame

    def pending(self) -> bool:
        return self.ring.head >= self._next

    def _walk(self) -> Frame | None:
        ring, counts = self.ring, self._counts
        while True:
            head = ring.head
            if head < self._next:
                return None
            seq = head if self._latest else max(self._next, head - ring.slot_count + 1)
            self._next = seq + 1
            desc = older_descriptor(self.template, ring, seq)
            if desc is not None:
                counts.seen(desc.token, seq)
                return Frame(desc, counts.returned(), ring=ring)
            # Lapped while we looked: a gap, counted with the next frame returned.


def older_descriptor(first: Descriptor, ring: RingReader, seq: int) -> Descriptor | None:
    """A descriptor of frame *seq* of *first*'s ring, if its slot holds it whole.

    What a frame is comes from *first* (the same ring: same stream, generation, geometry,
    time base); which frame, from the writer's record in the slot table, read between two
    looks at the stamp, so that a record the writer began to overwrite is never believed.
    """
    slot = ring.slot_of(seq)
    if not ring.holds(slot, seq):
        return None
    record = ring.slot_info(slot)
    if not ring.holds(slot, seq) or record.seq != seq:
        return None
    return msgspec.structs.replace(first, seq=seq, slot=slot, pts=record.pts,
                                   timestamp_ns=record.timestamp_ns)
