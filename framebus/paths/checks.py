"""What a descriptor must agree with before a shared-memory path believes it: its ring's
geometry and head, and the writer's own record in the frame's slot."""

from __future__ import annotations

from ..errors import ProtocolError
from ..protocol.descriptor import Descriptor
from ..shm import RingReader
from ..shm.ring import SlotRecord


def check_against_ring(desc: Descriptor, ring: RingReader) -> None:
    g = ring.geometry
    if (desc.slot >= ring.slot_count or desc.slot != ring.slot_of(desc.seq)
            or desc.shape != g.shape or desc.dtype != g.dtype.str or desc.fmt != g.fmt
            or desc.generation != ring.generation):
        raise ProtocolError(f"descriptor of frame {desc.seq} does not match its ring")
    # A producer publishes a frame after committing it: one beyond the head is made up.
    if desc.seq > ring.head:
        raise ProtocolError(f"descriptor of frame {desc.seq}, but the ring's newest is "
                            f"{ring.head}")


def check_against_slot(desc: Descriptor, record: SlotRecord) -> None:
    """The writer's own record of the frame in its slot must be the descriptor's: a made-up
    pts or timestamp of a real frame is refused too."""
    if record != (desc.seq, desc.pts, desc.timestamp_ns):
        raise ProtocolError(f"descriptor of frame {desc.seq} does not match its slot's "
                            "pts and timestamp")
