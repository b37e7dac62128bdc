"""Packet descriptors: what a packet producer publishes for every packet it commits.

As a frame descriptor (descriptor.py) it travels after the topic ``<stream>\\0``, but on the
packet stream's own socket, and is msgpack with ``v``. It says which packet of which ring
is new; the packet's bytes and timing are in the ring, whose index the subscriber reads and
checks the descriptor against (a descriptor is a wake-up and a claim, never the truth).
Documented in docs/packets.md.
"""

from __future__ import annotations

from typing import Annotated

import msgspec
from msgspec import Meta

from ..errors import ProtocolError
from .fields import Count, Pts, Seq, StreamName, Token, decode

VERSION = 1
MAX_SIZE = 512


class PacketDescriptor(msgspec.Struct, tag_field="v", tag=VERSION, kw_only=True, frozen=True,
                       forbid_unknown_fields=True, gc=False):
    """Packet *seq* of a packet ring: built by keyword; ``pack()`` and ``unpack()``."""

    stream: StreamName
    generation: Count
    token: Token
    seq: Seq
    size: Annotated[int, Meta(ge=0, le=2**40)]
    keyframe: bool
    pts: Pts | None = None
    timestamp_ns: Count

    def pack(self) -> bytes:
        return _ENCODER.encode(self)

    @classmethod
    def unpack(cls, data: bytes | memoryview) -> PacketDescriptor:
        desc = decode(_DECODER, data, "packet descriptor", MAX_SIZE)
        if type(desc) is not PacketDescriptor:
            raise ProtocolError(f"packet descriptor version 0, expected {VERSION}")
        return desc


class _Unversioned(msgspec.Struct, tag_field="v", tag=0, forbid_unknown_fields=True):
    """Never valid: makes ``v`` required (see descriptor.py)."""


_ENCODER = msgspec.msgpack.Encoder()
_DECODER = msgspec.msgpack.Decoder(PacketDescriptor | _Unversioned)
