"""Descriptors: round trip, and every kind of malformed input refused."""

import random
from fractions import Fraction

import msgpack
import msgspec
import pytest

from framebus import ProtocolError
from framebus.protocol.descriptor import Descriptor

GOOD = Descriptor(stream="cam1", generation=2, token=b"t" * 16, seq=41, slot=1, pts=1234,
                  time_base=Fraction(1, 90000), timestamp_ns=1_700_000_000_000_000_000,
                  shape=(1080, 1920, 3), dtype="|u1", fmt="bgr24")


def test_round_trip():
    assert Descriptor.unpack(GOOD.pack()) == GOOD
    assert len(GOOD.pack()) < 200


def _with(**changes) -> bytes:
    m = msgpack.unpackb(GOOD.pack())
    m.update(changes)
    return msgpack.packb(m)


@pytest.mark.parametrize("data", [
    b"", b"\xc1", b"garbage", msgpack.packb([1, 2, 3]), msgpack.packb("cam1"),
    _with(v=2), _with(stream="../x"), _with(stream=None), _with(token=b"short"),
    _with(seq=-1), _with(seq="1"), _with(seq=1.5), _with(slot=5000), _with(shape=[]),
    _with(shape=[0, 4]), _with(shape=[1, 2, 3, 4, 5]), _with(shape="1080x1920"),
    _with(pts="x"), _with(time_base=[1, 0]), _with(time_base=[1]), _with(dtype=""),
    _with(fmt="x" * 40), _with(generation=-3), _with(timestamp_ns=None),
    b"\x00" * 2000,
])
def test_malformed_descriptors_are_refused(data):
    with pytest.raises(ProtocolError):
        Descriptor.unpack(data)


def test_random_bytes_never_escape_as_other_errors():
    rng = random.Random(7)
    good = GOOD.pack()
    for _ in range(3000):
        data = bytearray(good)
        for _ in range(rng.randint(1, 6)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        try:
            Descriptor.unpack(bytes(data[: rng.randint(0, len(data))]))
        except ProtocolError:
            pass


def _refusal(data: bytes) -> str:
    with pytest.raises(ProtocolError) as caught:
        Descriptor.unpack(data)
    return str(caught.value)


def test_decoding_is_strict_and_says_which_field():
    assert "Expected `int`, got `bool` - at `$.seq`" in _refusal(_with(seq=True))
    assert "got `bool`" in _refusal(_with(v=True))  # True == 1, and is no version
    assert "got `float`" in _refusal(_with(slot=1.0))
    assert "unknown field `extra`" in _refusal(_with(extra=1))
    assert "`$.time_base`" in _refusal(_with(time_base=[True, 90000]))
    assert "`$.pts`" in _refusal(_with(pts=-(2**63)))  # AV_NOPTS_VALUE travels as nil
    m = msgpack.unpackb(GOOD.pack())
    del m["v"]
    assert "missing required field `v`" in _refusal(msgpack.packb(m))
    assert "exceeds 1024" in _refusal(_with(fmt="x", dtype="y", stream="z") + b"\0" * 1024)


def test_no_pts_and_no_time_base_travel_as_nil():
    d = msgspec.structs.replace(GOOD, pts=None, time_base=None)
    wire = msgpack.unpackb(d.pack())
    assert wire["pts"] is None and wire["time_base"] is None
    assert Descriptor.unpack(d.pack()) == d


def test_the_wire_is_the_one_before_msgspec():
    """The map the hand-written codec sent and read: a mixed old/new site still talks."""
    old = {"v": 1, "stream": "cam1", "generation": 2, "token": b"t" * 16, "seq": 41, "slot": 1,
           "pts": 1234, "time_base": [1, 90000], "timestamp_ns": 1_700_000_000_000_000_000,
           "shape": [1080, 1920, 3], "dtype": "|u1", "fmt": "bgr24"}
    assert msgpack.unpackb(GOOD.pack()) == old
    assert Descriptor.unpack(msgpack.packb(old)) == GOOD
    assert isinstance(GOOD.time_base, Fraction) and GOOD.shape == (1080, 1920, 3)


def test_descriptors_are_built_by_keyword():
    with pytest.raises(TypeError):
        Descriptor("cam1", 2, b"t" * 16, 41, 1)  # type: ignore[misc]
