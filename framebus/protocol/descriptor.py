"""Frame descriptors: the small message a producer publishes for every frame.

A descriptor says where a frame lies (stream, ring token and generation, slot) and what it
is (seq, timestamps, geometry). It is msgpack, a map with the keys below and ``v``, the
version; the pixels never travel with it. Documented in docs/protocol.md. Decoding checks
every field, since a descriptor that lies about its slot or shape must never reach a
reader's arithmetic; what it claims about the ring, the reader checks against the ring.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import msgspec

from ..errors import ProtocolError
from .fields import (
    Count,
    Pts,
    Seq,
    Shape,
    Slot,
    StreamName,
    TimeBase,
    Token,
    Word,
    decode,
)

VERSION = 1
#: Bytes, at most, of a descriptor on the wire (after its topic); a typical one has 140.
MAX_SIZE = 1024


class Descriptor(msgspec.Struct, tag_field="v", tag=VERSION, kw_only=True, frozen=True,
                 forbid_unknown_fields=True, gc=False):
    """One frame of a stream: built by keyword; ``pack()`` and ``unpack()`` are its wire."""

    stream: StreamName
    generation: Count
    token: Token
    seq: Seq
    #: Always seq % the ring's slot count.
    slot: Slot
    #: Presentation timestamp in ``time_base`` units; None when the producer gave none.
    pts: Pts | None = None
    #: Seconds per ``pts`` unit; on the wire [num, den], or nil.
    time_base: Fraction | None = None
    #: Commit time, ns since the Unix epoch.
    timestamp_ns: Count
    shape: Shape
    dtype: Word
    fmt: Word

    def pack(self) -> bytes:
        return _ENCODER.encode(self)

    @classmethod
    def unpack(cls, data: bytes | memoryview) -> Descriptor:
        """Parse and validate; raises ProtocolError, with the reason, on anything malformed."""
        desc = decode(_DECODER, data, "descriptor", MAX_SIZE)
        if type(desc) is not Descriptor:
            raise ProtocolError(f"descriptor version 0, expected {VERSION}")
        return desc


class _Unversioned(msgspec.Struct, tag_field="v", tag=0, forbid_unknown_fields=True):
    """Never valid. msgspec requires the tag of a union's members, not of a lone Struct:
    decoding the union of a Descriptor and this makes ``v`` required."""


def _enc_hook(value: Any) -> Any:
    if isinstance(value, Fraction):
        return (value.numerator, value.denominator)
    raise TypeError(f"cannot encode {type(value).__name__}")


def _dec_hook(type_: type, value: Any) -> Any:
    if type_ is not Fraction:
        raise TypeError(f"cannot decode {type_.__name__}")
    # A stream has one time base: a [num, den] seen before (ints, not bools) is its Fraction
    # at once. msgspec.convert, strict and slow (µs), checks any other against TimeBase.
    if type(value) is list and len(value) == 2 and type(value[0]) is type(value[1]) is int:
        known = _TIME_BASES.get((value[0], value[1]))
        if known is not None:
            return known
    try:
        num, den = msgspec.convert(value, TimeBase)
    except msgspec.ValidationError as exc:
        raise ValueError(f"Expected [num, den] ({exc})") from None
    fraction = Fraction(num, den)
    if len(_TIME_BASES) < 64:
        _TIME_BASES[num, den] = fraction
    return fraction


#: Time bases decoded so far, each checked once.
_TIME_BASES: dict[tuple[int, int], Fraction] = {}

_ENCODER = msgspec.msgpack.Encoder(enc_hook=_enc_hook)
_DECODER = msgspec.msgpack.Decoder(Descriptor | _Unversioned, dec_hook=_dec_hook)
