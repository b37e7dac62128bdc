"""Hostile input for framebus: hypothesis strategies of what a stranger may send to the broker,
the relay and a subscriber's descriptor socket (framebus.testing.probers sends them).

The valid messages come from their own types (framebus/protocol/), through
framebus.testing.schemas: nothing here restates a schema. The strategies break them, field
by field and byte by byte. Nothing here needs pytest: ``draw(strategy, n, seed)`` gives
examples outside a test, the same ones for the same seed.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, replace
from typing import Any, cast

import msgspec
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import seed as seeded
from hypothesis import strategies as st
from msgspec import inspect as mi

from framebus import config
from framebus.names import topic
from framebus.protocol import broker as pb
from framebus.protocol import relay as wire
from framebus.protocol.broker import MAX_MESSAGE as BROKER_LIMIT
from framebus.protocol.descriptor import Descriptor
from framebus.protocol.fields import StreamName, Text, Token
from framebus.remote.relay import MAX_MESSAGE as RELAY_LIMIT
from framebus.testing.schemas import Override, fields_of, invalid, valid, values


def _pack(value: object) -> bytes:
    return msgspec.msgpack.encode(value)


def _deeply_nested(depth: int) -> bytes:
    """A msgpack array nested *depth* deep, as bytes: no encoder goes that deep."""
    return b"\x91" * depth + b"\xc0"


def _bad_tag(tags: list) -> st.SearchStrategy:
    """Values of a tag (op, v) that are none of *tags*, some of them near misses."""
    near = [f(tag) for tag in tags if isinstance(tag, str)
            for f in (str.upper, lambda s: s + "\0", lambda s: "_" + s, lambda s: s[:-1])]
    return st.one_of(st.sampled_from([*near, "", "__init__", "handlers", 0, 2, True, 1.0]),
                     values).filter(lambda v: not any(type(v) is type(t) and v == t for t in tags))


def _break_one(draw, struct: type[msgspec.Struct], message: dict, tags: list) -> None:
    """Drop a field of *message* (a valid *struct*), add one, or give one a refused value."""
    fields = fields_of(struct)
    key = draw(st.sampled_from(sorted(message))) if message else None
    how = draw(st.sampled_from(["drop", "break", "break", "add"])) if key else "add"
    if how == "drop":
        del message[key]
    elif how == "break":
        message[key] = draw(invalid(fields[key].type) if key in fields else _bad_tag(tags))
    else:
        message[draw(st.text(max_size=10))] = draw(values)


@st.composite
def _broken(draw, messages: st.SearchStrategy[dict], tags: list) -> dict:
    """A message of *messages*, its fields broken one to three times, its op more often."""
    message = draw(messages)
    struct = _STRUCTS[message["op"]]
    for _ in range(draw(st.integers(1, 3))):
        if draw(st.integers(0, 2)) == 0:
            message["op"] = draw(_bad_tag(tags))
        else:
            _break_one(draw, struct, message, tags)
    return message


def _flipped(draw, packed: bytes) -> bytes:
    data = bytearray(packed)
    for _ in range(draw(st.integers(1, 4))):
        data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    return bytes(data)


#: Byte-level damage to a well-formed message, the same for every service.
_DAMAGE = {
    "truncated": lambda draw, packed: packed[:draw(st.integers(0, len(packed) - 1))],
    "flipped": _flipped,
    "not_a_map": lambda draw, packed: _pack(draw(values.filter(
        lambda v: not isinstance(v, dict)))),
    "trailing": lambda draw, packed: packed + draw(st.binary(min_size=1, max_size=16)),
}
#: msgpack extension types where strings belong, and a timestamp of a length msgpack refuses.
_EXT_PAYLOADS = [
    _pack({"op": msgspec.msgpack.Ext(1, b"lookup"), "id": 1}),
    b"\x83" + _pack("op") + _pack("lookup") + _pack("name") + b"\xd6\xff\0\0\0\0"
    + _pack("id") + _pack(1),
    b"\x81" + _pack("op") + b"\xc7\x03\xff\x00\x00\x00",
    b"\x81\xa2op\xd4\x05\x00",
]


@st.composite
def _payloads(draw, good: st.SearchStrategy[dict], tags: list, cap: int, limit: int) -> bytes:
    """One message part for a service that decodes at most *cap* bytes of a request, and
    whose ZeroMQ cuts a part over *limit*: requests broken (most) or not, random bytes,
    byte-level damage, nesting past any sane depth, a field over every limit, a request over
    the service's cap, and one over ZeroMQ's."""
    kind = draw(st.sampled_from(["broken"] * 8 + ["valid"] * 4 + [
        "bytes", *_DAMAGE, "nested", "big", "huge", "oversized", "ext"]))
    if kind == "broken":
        return _pack(draw(_broken(good, tags)))
    message = draw(good)
    key = draw(st.sampled_from([k for k in message if k != "op"] or ["x"]))
    if kind == "bytes":
        return draw(st.binary(max_size=256))
    if kind in _DAMAGE:
        return _DAMAGE[kind](draw, _pack(message))
    if kind == "nested":  # the op, then a field that is an array in an array in an array...
        return _pack({"op": message["op"], key: None})[:-1] + _deeply_nested(
            draw(st.integers(1, 5000)))
    if kind == "big":  # strings, binaries, arrays over any field's limits, under ZeroMQ's
        n = draw(st.integers(256, min(4 * cap, limit - 300)))
        return _pack({**message, key: draw(st.sampled_from(["n" * n, b"b" * n, [0] * n]))})
    if kind == "huge":  # over the service's cap, under ZeroMQ's: the service refuses it
        return _pack({**message, "pad": "p" * draw(st.integers(cap, limit - 200))})
    if kind == "oversized":  # over ZMQ_MAXMSGSIZE: ZeroMQ cuts the connection
        return _pack({**message, "pad": b"p" * (limit + draw(st.integers(1, limit)))})
    return draw(st.sampled_from(_EXT_PAYLOADS)) if kind == "ext" else _pack(message)


@st.composite
def _envelopes(draw, payloads: st.SearchStrategy[bytes], limit: int,
               delimiter: list[bytes]) -> list[bytes]:
    """Multipart messages around *payloads*: most of them as framebus sends them (after
    *delimiter*), the others with no delimiter, a wrong one, extra parts, random parts, and
    a part over *limit* anywhere."""
    kind = draw(st.sampled_from(["right"] * 10 + ["bare", "wrong", "extra", "many", "random",
                                                  "oversized"]))
    if kind == "random":
        return draw(st.lists(st.binary(max_size=64), min_size=1, max_size=6))
    if kind == "oversized":
        head = draw(st.lists(st.binary(max_size=8), max_size=2))
        return [*head, b"\0" * (limit + draw(st.integers(1, 4 * limit)))]
    if kind == "many":
        return draw(st.lists(payloads, min_size=2, max_size=4))
    payload = draw(payloads)
    if kind == "bare":
        return [payload]
    if kind == "wrong":
        return [draw(st.binary(min_size=1, max_size=8)), payload]
    extra = draw(st.lists(st.binary(max_size=16), min_size=1, max_size=4)) if kind == "extra" \
        else []
    return [*delimiter, payload, *extra]


# -- the broker --------------------------------------------------------------------------------

stream_names = valid(StreamName)
tokens = valid(Token)
#: Every request the broker knows, by its op.
_OPS: dict[str, type[msgspec.Struct]] = {
    str(t.tag): t.cls for t in cast(mi.UnionType, mi.type_info(pb.Request)).types
    if isinstance(t, mi.StructType)}
_STRUCTS: dict[str, type[msgspec.Struct]] = {**_OPS, "want": wire.Want, "bye": wire.Bye}


def _segment(fields: dict) -> st.SearchStrategy:
    prefix = st.from_regex(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,20}\Z")
    return prefix.map(lambda p: f"/{p}.{fields['name']}")


def message(struct: type[msgspec.Struct], **overrides: Override) -> st.SearchStrategy[dict]:
    """Valid *struct*s, as valid() makes them, with a ring name that ends in the stream's (a
    rule across fields, which no Meta states)."""
    return valid(struct, across={"segment": _segment}, **overrides)


#: Not only what the types allow: this host's name (whose streams the broker asks the kernel
#: about), endpoints ZeroMQ really takes (and a few that start right, which ZeroMQ refuses
#: and the broker cannot tell).
_REALISTIC: dict[str, dict[str, Override]] = {
    "register": {"host": st.sampled_from([config.host_id(), "elsewhere"]) | valid(Text),
                 "endpoint": st.one_of(
                     st.builds("ipc:///tmp/fz-{}.sock".format, st.integers(0, 999)),
                     st.builds("tcp://127.0.0.1:{}".format, st.integers(1, 65535)),
                     st.sampled_from(["tcp://", "ipc://", "tcp://no-port", "ipc://" + "x" * 200]))},
    "relay": {"endpoint": st.builds("tcp://127.0.0.1:{}".format, st.integers(1, 65535))},
}
#: Well-formed requests of every op, register and relay (which fill the broker) the most.
broker_requests = st.one_of(*[message(cls, **_REALISTIC.get(op, {})) for op, cls in _OPS.items()
                              for _ in range(1 + 2 * (op in _REALISTIC))])


def broker_messages() -> st.SearchStrategy[list[bytes]]:
    """Multipart messages a DEALER may send the broker's ROUTER: envelopes of any shape around
    payloads of any kind, oversized parts (cut by ZeroMQ), and well-formed requests that
    register fake streams and relays, look up and heartbeat made-up names (the broker accepts
    or refuses those with a reason of their own)."""
    payloads = _payloads(broker_requests, sorted(_OPS), pb.MAX_REQUEST, BROKER_LIMIT)
    return _envelopes(payloads, BROKER_LIMIT, [b""])


# -- the relay ----------------------------------------------------------------------------------

def relay_messages(streams: tuple[str, ...] = ()) -> st.SearchStrategy[list[bytes]]:
    """Messages a DEALER may send a relay: one-part requests of every kind (garbage,
    truncated, oversized, wrong versions, bad fields, ``bye``), multi-part ones, and valid
    ``want``s for stream names that do not exist, or for *streams*, which do."""
    missing = stream_names.filter(lambda name: name not in streams)
    names = st.one_of(missing, st.sampled_from(streams)) if streams else missing
    wants = valid(wire.Want, stream=names)
    payloads = _payloads(st.one_of(wants, wants, wants, valid(wire.Bye)), ["want", "bye"],
                         wire.MAX_REQUEST, RELAY_LIMIT)
    return _envelopes(payloads, RELAY_LIMIT, [])


# -- descriptors that lie -----------------------------------------------------------------------

@dataclass(frozen=True)
class RingFacts:
    """What is true of a real ring: what a lie about it is measured against."""

    stream: str
    token: bytes
    generation: int
    slots: int
    shape: tuple[int, ...]
    dtype: str
    fmt: str
    #: A frame the ring holds and the subscriber has not seen yet: (seq, pts, timestamp_ns),
    #: e.g. one just committed whose true descriptor has not gone out. Given it, the lies are
    #: about that frame and false only in the fields they change, so that each check of a
    #: subscriber must catch its own; without it, they name random frames, most never written.
    frame: tuple[int, int | None, int] | None = None

    @classmethod
    def of(cls, pub) -> RingFacts:
        """The facts of a framebus.Publisher's current ring."""
        ring = pub._ring
        g = ring.geometry
        return cls(pub.name, ring.token, ring.generation, ring.slot_count, g.shape, g.dtype.str,
                   g.fmt)

    def at(self, seq: int, pts: int | None, timestamp_ns: int) -> RingFacts:
        """These facts, and frame *seq* with its pts and timestamp."""
        return replace(self, frame=(seq, pts, timestamp_ns))


#: Frames at and beyond this seq are never written by a test's producer.
NEVER_WRITTEN = 2**40
#: What a subscriber can check against the ring: all but time_base (not in the ring), and
#: slot and seq, which are lied about in their own ways.
_CHECKED = ["stream", "generation", "token", "pts", "timestamp_ns", "shape", "dtype", "fmt"]


def lying_descriptors(real: RingFacts) -> st.SearchStrategy[bytes]:
    """Messages, topic included, as a producer's PUB would send them, each a lie about the
    ring *real*: wrong topics, garbage after the right one, and well-formed descriptors with
    fields the ring contradicts: stream, token, generation, shape, dtype, format, slot (out of
    range, or not seq % slots), seq (never written, or a replay), pts and timestamp."""
    right_topic = topic(real.stream)
    fields = fields_of(Descriptor)
    others = {name: valid(fields[name].type) for name in _CHECKED}
    if real.frame is None:
        # Which frame it names is a guess: most never written; a stranger cannot know
        # when one was, so its timestamp is a lie too.
        seqs = st.integers(0, NEVER_WRITTEN - 1)
        frames: st.SearchStrategy[tuple[int, int | None, int]] = st.tuples(
            seqs, seqs, st.integers(0, 2**63 - 1))
    else:
        frames = st.just(real.frame)

    @st.composite
    def truth(draw) -> dict:
        seq, pts, timestamp_ns = draw(frames)
        return {"v": 1, "stream": real.stream, "generation": real.generation,
                "token": real.token, "seq": seq, "slot": seq % real.slots, "pts": pts,
                "time_base": None, "timestamp_ns": timestamp_ns, "shape": list(real.shape),
                "dtype": real.dtype, "fmt": real.fmt}

    @st.composite
    def well_formed_lie(draw) -> bytes:
        d = draw(truth())
        lies = draw(st.lists(st.sampled_from([*_CHECKED, "slot", "seq"]), unique=True,
                             min_size=0 if real.frame is None else 1, max_size=3))
        for field in lies:
            if field == "slot":  # out of range, or not seq % slots
                wrong = [s for s in range(min(real.slots + 3, 1024)) if s != d["seq"] % real.slots]
                d["slot"] = draw(st.sampled_from(wrong) | st.integers(real.slots, 1023)
                                 if real.slots < 1024 else st.sampled_from(wrong))
            elif field == "seq":  # never written, the next ones (not yet), or a replay
                seq = d["seq"]
                d["seq"] = draw(st.integers(NEVER_WRITTEN, 2**62) | _other(st.integers(
                    max(0, seq - real.slots - 2), seq + 3), seq))
                d["slot"] = d["seq"] % real.slots
            else:
                d[field] = draw(_other(others[field], d[field]))
        return right_topic + _pack(d)

    @st.composite
    def garbage_after_topic(draw) -> bytes:
        d = draw(truth())
        kind = draw(st.sampled_from(["bytes", "broken", "oversized", "empty", *_DAMAGE]))
        if kind == "bytes":
            return right_topic + draw(st.binary(max_size=200))
        if kind == "broken":  # a field missing, of the wrong type or out of range
            _break_one(draw, Descriptor, d, [1])
            return right_topic + _pack(d)
        if kind == "oversized":
            return right_topic + _pack({**d, "pad": "p" * draw(st.integers(1024, 4000))})
        if kind == "empty":
            return right_topic
        return right_topic + _DAMAGE[kind](draw, _pack(d))

    @st.composite
    def wrong_topic(draw) -> bytes:
        head = draw(st.one_of(
            stream_names.filter(lambda name: name != real.stream).map(topic),
            st.just(real.stream.encode()),  # no NUL
            st.just(real.stream.encode() + b"x\0"),  # a longer name starting with this one
            st.just(b"\0"), st.just(b""), st.binary(max_size=8)))
        return head + _pack(draw(truth()))

    return st.one_of(well_formed_lie(), well_formed_lie(), well_formed_lie(),
                     garbage_after_topic(), wrong_topic())


def _other(strategy: st.SearchStrategy, value: Any) -> st.SearchStrategy:
    return strategy.filter(lambda v: v != value)


# -- drawing examples outside a test ------------------------------------------------------------

def draw(strategy: st.SearchStrategy, n: int, seed: int) -> list:
    """*n* examples of *strategy*, the same ones for the same *seed*; for scripts, outside
    pytest (inside a test, use @given). Hypothesis gives fewer than asked when it runs out of
    distinct examples: then this draws again with the next seeds until it has *n*."""
    examples: list = []
    for attempt in itertools.count():
        missing = n - len(examples)
        if missing <= 0 or attempt > 100:
            return examples[:n]

        @seeded(seed + attempt)
        @settings(max_examples=missing, database=None, phases=[Phase.generate], deadline=None,
                  suppress_health_check=list(HealthCheck), derandomize=False)
        @given(strategy)
        def collect(example) -> None:
            examples.append(example)

        collect()
    return examples
