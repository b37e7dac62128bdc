"""Frame descriptors: the small message a producer publishes for every frame.

A descriptor says where a frame lies (stream, ring token and generation,
slot) and what it is (seq, timestamps, geometry). It is msgpack, a map with
the keys below; the pixels never travel with it. Documented in
docs/protocol.md. Decoding validates every field, since a descriptor that
lies about its slot or shape must never reach a reader's arithmetic.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import msgpack

from ..errors import ProtocolError
from ..names import is_valid_stream_name
from ..shm.layout import MAX_NDIM

VERSION = 1
MAX_SIZE = 1024
_INT64 = (-(2**63), 2**63 - 1)


@dataclass(frozen=True)
class Descriptor:
    stream: str
    generation: int
    token: bytes
    seq: int
    slot: int
    pts: int | None
    time_base: Fraction | None
    timestamp_ns: int
    shape: tuple[int, ...]
    dtype: str
    fmt: str

    def pack(self) -> bytes:
        tb = self.time_base
        return msgpack.packb({
            "v": VERSION,
            "stream": self.stream,
            "generation": self.generation,
            "token": self.token,
            "seq": self.seq,
            "slot": self.slot,
            "pts": self.pts,
            "time_base": None if tb is None else [tb.numerator, tb.denominator],
            "timestamp_ns": self.timestamp_ns,
            "shape": list(self.shape),
            "dtype": self.dtype,
            "fmt": self.fmt,
        })

    @classmethod
    def unpack(cls, data: bytes) -> Descriptor:
        """Parse and validate; raises ProtocolError on anything malformed."""
        if len(data) > MAX_SIZE:
            raise ProtocolError(f"descriptor of {len(data)} bytes exceeds {MAX_SIZE}")
        try:
            m = msgpack.unpackb(data, raw=False, strict_map_key=True, max_map_len=32,
                                max_array_len=8, max_str_len=64, max_bin_len=64)
        except Exception as exc:  # msgpack raises many types on garbage
            raise ProtocolError(f"descriptor is not valid msgpack: {exc}") from None
        if not isinstance(m, dict):
            raise ProtocolError("descriptor is not a map")
        if type(m.get("v")) is not int or m["v"] != VERSION:  # True == 1, and is no version
            raise ProtocolError(f"descriptor version {m.get('v')!r}, expected {VERSION}")
        stream = m.get("stream")
        if not is_valid_stream_name(stream):
            raise ProtocolError(f"descriptor has an invalid stream name {stream!r}")
        token = m.get("token")
        if not isinstance(token, bytes) or len(token) != 16:
            raise ProtocolError("descriptor token must be 16 bytes")
        shape = m.get("shape")
        if (not isinstance(shape, list) or not 1 <= len(shape) <= MAX_NDIM
                or not all(_is_int(n, 1, 2**31) for n in shape)):
            raise ProtocolError(f"descriptor has an invalid shape {shape!r}")
        pts = m.get("pts")
        if pts is not None and not _is_int(pts, *_INT64):
            raise ProtocolError("descriptor pts must be an int64 or nil")
        return cls(
            stream=stream,
            generation=_field_int(m, "generation", 0, 2**63 - 1),
            token=token,
            seq=_field_int(m, "seq", 0, 2**62),
            slot=_field_int(m, "slot", 0, 1023),
            pts=pts,
            time_base=_time_base(m.get("time_base")),
            timestamp_ns=_field_int(m, "timestamp_ns", 0, 2**63 - 1),
            shape=tuple(shape),
            dtype=_field_str(m, "dtype"),
            fmt=_field_str(m, "fmt"),
        )


def _is_int(value: object, lo: int, hi: int) -> bool:
    return type(value) is int and lo <= value <= hi


def _field_int(m: dict, key: str, lo: int, hi: int) -> int:
    value = m.get(key)
    if not _is_int(value, lo, hi):
        raise ProtocolError(f"descriptor field {key!r} must be an integer in [{lo}, {hi}], got {value!r}")
    return value


def _field_str(m: dict, key: str) -> str:
    value = m.get(key)
    if not isinstance(value, str) or not 0 < len(value) <= 15 or not value.isprintable():
        raise ProtocolError(f"descriptor field {key!r} must be a short string, got {value!r}")
    return value


def _time_base(value: object) -> Fraction | None:
    if value is None:
        return None
    if (isinstance(value, list) and len(value) == 2 and _is_int(value[0], 1, 2**31)
            and _is_int(value[1], 1, 2**31)):
        return Fraction(value[0], value[1])
    raise ProtocolError(f"descriptor time_base must be [num, den] or nil, got {value!r}")
