"""What a descriptor costs to decode and to encode, before and after msgspec.

    python -m bench.descriptor [--runs 31] [--number 20000]

Every frame a subscriber reads is one descriptor decoded, and every frame a producer
publishes one encoded. "before" is the hand-written codec framebus had until its messages
were declared as msgspec Structs (issue 10): msgpack, then a check per field; a copy of it
lives here, and only here, as the baseline. "after" is framebus.protocol.descriptor. Both
decode the same bytes into the same fields, and each figure is the median over --runs of
the mean of --number calls.
"""

from __future__ import annotations

import statistics
import timeit
from dataclasses import dataclass
from fractions import Fraction

import click
import msgpack

from framebus.errors import ProtocolError
from framebus.names import is_valid_stream_name
from framebus.protocol.descriptor import Descriptor

# -- the old baseline: framebus/descriptor.py as it was before msgspec (commit 323b0cf) ------

_OLD_VERSION = 1
_OLD_MAX_SIZE = 1024
_OLD_INT64 = (-(2**63), 2**63 - 1)


@dataclass(frozen=True)
class OldDescriptor:
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
            "v": _OLD_VERSION, "stream": self.stream, "generation": self.generation,
            "token": self.token, "seq": self.seq, "slot": self.slot, "pts": self.pts,
            "time_base": None if tb is None else [tb.numerator, tb.denominator],
            "timestamp_ns": self.timestamp_ns, "shape": list(self.shape), "dtype": self.dtype,
            "fmt": self.fmt,
        })

    @classmethod
    def unpack(cls, data: bytes) -> OldDescriptor:
        if len(data) > _OLD_MAX_SIZE:
            raise ProtocolError(f"descriptor of {len(data)} bytes exceeds {_OLD_MAX_SIZE}")
        try:
            m = msgpack.unpackb(data, raw=False, strict_map_key=True, max_map_len=32,
                                max_array_len=8, max_str_len=64, max_bin_len=64)
        except Exception as exc:
            raise ProtocolError(f"descriptor is not valid msgpack: {exc}") from None
        if not isinstance(m, dict):
            raise ProtocolError("descriptor is not a map")
        if type(m.get("v")) is not int or m["v"] != _OLD_VERSION:
            raise ProtocolError(f"descriptor version {m.get('v')!r}, expected {_OLD_VERSION}")
        stream = m.get("stream")
        if not is_valid_stream_name(stream):
            raise ProtocolError(f"descriptor has an invalid stream name {stream!r}")
        token = m.get("token")
        if not isinstance(token, bytes) or len(token) != 16:
            raise ProtocolError("descriptor token must be 16 bytes")
        shape = m.get("shape")
        if (not isinstance(shape, list) or not 1 <= len(shape) <= 4
                or not all(_old_is_int(n, 1, 2**31) for n in shape)):
            raise ProtocolError(f"descriptor has an invalid shape {shape!r}")
        pts = m.get("pts")
        if pts is not None and not _old_is_int(pts, *_OLD_INT64):
            raise ProtocolError("descriptor pts must be an int64 or nil")
        return cls(
            stream=stream,  # type: ignore[arg-type]
            generation=_old_field_int(m, "generation", 0, 2**63 - 1),
            token=token, seq=_old_field_int(m, "seq", 0, 2**62),
            slot=_old_field_int(m, "slot", 0, 1023), pts=pts,
            time_base=_old_time_base(m.get("time_base")),
            timestamp_ns=_old_field_int(m, "timestamp_ns", 0, 2**63 - 1),
            shape=tuple(shape), dtype=_old_field_str(m, "dtype"), fmt=_old_field_str(m, "fmt"),
        )


def _old_is_int(value: object, lo: int, hi: int) -> bool:
    return type(value) is int and lo <= value <= hi  # type: ignore[operator]


def _old_field_int(m: dict, key: str, lo: int, hi: int) -> int:
    value = m.get(key)
    if not _old_is_int(value, lo, hi):
        raise ProtocolError(f"descriptor field {key!r} must be an integer in [{lo}, {hi}]")
    return value  # type: ignore[return-value]


def _old_field_str(m: dict, key: str) -> str:
    value = m.get(key)
    if not isinstance(value, str) or not 0 < len(value) <= 15 or not value.isprintable():
        raise ProtocolError(f"descriptor field {key!r} must be a short string, got {value!r}")
    return value


def _old_time_base(value: object) -> Fraction | None:
    if value is None:
        return None
    if (isinstance(value, list) and len(value) == 2 and _old_is_int(value[0], 1, 2**31)
            and _old_is_int(value[1], 1, 2**31)):
        return Fraction(value[0], value[1])
    raise ProtocolError(f"descriptor time_base must be [num, den] or nil, got {value!r}")


# -- the measurement ------------------------------------------------------------------------

FIELDS = dict(stream="cam1", generation=2, token=bytes(range(16)), seq=123_456, slot=0,
              pts=123_456 * 3000, time_base=Fraction(1, 90000),
              timestamp_ns=1_764_000_000_123_456_789, shape=(1080, 1920, 3), dtype="|u1",
              fmt="bgr24")


def _microseconds(call, runs: int, number: int) -> float:
    """The median over *runs* of the mean time of one call, in µs."""
    return statistics.median(timeit.timeit(call, number=number) / number * 1e6
                             for _ in range(runs))


@click.command()
@click.option("--runs", default=31, show_default=True, help="Timings; the median is shown.")
@click.option("--number", default=20000, show_default=True, help="Calls per timing.")
def main(runs: int, number: int) -> None:
    """Print the decode and encode cost per descriptor, before and after msgspec."""
    old, new = OldDescriptor(**FIELDS), Descriptor(**FIELDS)  # type: ignore[arg-type]
    wire = new.pack()
    assert msgpack.unpackb(old.pack()) == msgpack.unpackb(wire), "not the same wire"
    assert OldDescriptor.unpack(wire).__dict__ == {f: getattr(Descriptor.unpack(wire), f)
                                                   for f in FIELDS}, "not the same fields"
    bare = Descriptor(**{**FIELDS, "pts": None, "time_base": None}).pack()  # type: ignore[arg-type]
    cases = [
        ("decode", lambda: OldDescriptor.unpack(wire), lambda: Descriptor.unpack(wire)),
        ("decode, no pts or time base", lambda: OldDescriptor.unpack(bare),
         lambda: Descriptor.unpack(bare)),
        ("encode", old.pack, new.pack),
    ]
    print(f"descriptor of {len(wire)} bytes; median of {runs} timings of {number} calls each")
    print(f"{'per descriptor':<30} {'before (µs)':>12} {'after (µs)':>11} {'speed-up':>9}")
    for name, before, after in cases:
        b, a = _microseconds(before, runs, number), _microseconds(after, runs, number)
        print(f"{name:<30} {b:>12.2f} {a:>11.2f} {b / a:>8.1f}x")


if __name__ == "__main__":
    main()
