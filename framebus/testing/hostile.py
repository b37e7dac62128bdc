"""Hostile input for framebus: hypothesis strategies of what a stranger may send to the broker,
the relay and a subscriber's descriptor socket, and probers that send one message and say
what came back.

Importable by pytest (tests/test_fuzz.py) and by plain scripts with tests/ on sys.path
(bench/soak*.py): nothing here needs pytest. ``draw(strategy, n, seed)`` gives examples
outside a test, the same ones for the same seed.

Outcomes of a probe:

- ``"refused"``: an error reply carrying a reason (broker: ``ok: false`` with ``code`` and
  ``error``; relay: ``[b"error", {code, error}]``);
- ``"answered"``: an ok reply (broker: ``ok: true``; relay: a frame, or, for a ``bye``,
  which has no reply, the next request answered);
- ``"cut"``: no reply, because ZeroMQ dropped the connection for a part over the service's
  ZMQ_MAXMSGSIZE (the prober connects afresh afterwards);
- ``"silent"``: no reply at all within the timeout: a failure;
- ``"garbled"``: a reply that is neither of the above: a failure.
"""

from __future__ import annotations

import itertools
import string
import time
from dataclasses import dataclass, replace

import msgpack
import zmq
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import seed as seeded
from hypothesis import strategies as st
from zmq.utils.monitor import recv_monitor_message

from framebus import config
from framebus.names import MAX_NAME_LENGTH, is_valid_stream_name, topic
from framebus.protocol import relay as wire
from framebus.protocol.broker import MAX_MESSAGE as BROKER_LIMIT
from framebus.remote.relay import MAX_MESSAGE as RELAY_LIMIT

REFUSED, ANSWERED, CUT, SILENT, GARBLED = "refused", "answered", "cut", "silent", "garbled"
#: What a service may do with any message; anything else is a failure.
FINE = (REFUSED, ANSWERED, CUT)

# -- values of every kind ----------------------------------------------------------------------

_INT_EDGES = [0, 1, -1, 127, 128, 255, 256, 2**15, 2**16, 2**31 - 1, 2**31, 2**32, 2**62,
              2**62 + 1, 2**63 - 1, -(2**31), -(2**63), 2**64 - 1]
_STR_EDGES = ["", " ", "\x00", "\n", "\x7f", "\u200b", "é", "\U0001f4a5", "a\x00b",
              "../x", "-x", ".x", "x/y", "%s%n", "\\", "tcp://", "ipc://", "x" * 256]

ints = st.one_of(st.sampled_from(_INT_EDGES), st.integers(-(2**63), 2**64 - 1))
texts = st.one_of(st.text(max_size=24), st.sampled_from(_STR_EDGES),
                  st.integers(0, 5000).map(lambda n: "x" * n))
blobs = st.one_of(st.binary(max_size=24),
                  st.sampled_from([b"", b"\0" * 15, b"\0" * 16, b"\0" * 17]),
                  st.integers(0, 5000).map(lambda n: b"\xff" * n))
scalars = st.one_of(st.none(), st.booleans(), ints, st.floats(), texts, blobs)
#: Any msgpack value: scalars, lists and maps of them, a few levels deep.
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=6), inner, max_size=4)),
    max_leaves=8)
#: Containers just over the limits services set on arrays and maps, and beyond.
big_containers = st.one_of(
    st.integers(9, 300).map(lambda n: list(range(n))),
    st.integers(17, 300).map(lambda n: {f"k{i}": i for i in range(n)}))

stream_names = st.from_regex(rf"[A-Za-z0-9][A-Za-z0-9._-]{{0,{MAX_NAME_LENGTH - 1}}}",
                             fullmatch=True)
bad_stream_names = st.one_of(
    st.sampled_from(["", "a" * (MAX_NAME_LENGTH + 1), "../x", "-x", "_x", ".x", "a/b", "a\0b",
                     "cam 1", "câm", "a\nb", "cam1\0"]),
    st.text(max_size=80).filter(lambda s: not is_valid_stream_name(s)),
    scalars.filter(lambda v: not isinstance(v, str)))
printable = st.text(string.ascii_letters + string.digits + string.punctuation + " é", min_size=1,
                    max_size=40)
tokens = st.binary(min_size=16, max_size=16)
shapes = st.lists(st.integers(1, 2**31 - 1), min_size=1, max_size=4)


def _deeply_nested(depth: int) -> bytes:
    """A msgpack array nested *depth* deep, as bytes: msgpack.packb stops at 512 levels."""
    return b"\x91" * depth + b"\xc0"


def _pack(value: object) -> bytes:
    return msgpack.packb(value, use_bin_type=True)


# -- the broker --------------------------------------------------------------------------------

def _register_fields() -> st.SearchStrategy[dict]:
    """A well-formed registration of a stream that does not exist (a fake, random token)."""
    @st.composite
    def build(draw) -> dict:
        name = draw(stream_names)
        prefix = draw(st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,20}", fullmatch=True))
        return {
            "name": name,
            # This host's streams are the ones the broker checks with the kernel.
            "host": draw(st.sampled_from([config.host_id(), config.host_id(), "elsewhere"])
                         | printable),
            # The edges of the range the protocol once documented (1 to 2^31) among others.
            "pid": draw(st.sampled_from([1, 2**31 - 1, 2**31]) | st.integers(1, 2**31 - 1)),
            "segment": f"/{prefix}.{name}",
            "endpoint": draw(st.one_of(
                st.builds("ipc:///tmp/fz-{}.sock".format, st.integers(0, 999)),
                st.builds("tcp://127.0.0.1:{}".format, st.integers(1, 65535)),
                # Start right, and ZeroMQ refuses them: the broker cannot tell.
                st.sampled_from(["tcp://", "ipc://", "tcp://no-port", "ipc://" + "x" * 200]))),
            "token": draw(tokens),
            "generation": draw(st.integers(0, 2**63 - 1)),
            "shape": draw(shapes),
            "dtype": draw(st.sampled_from(["|u1", "<u2", "<f4"])),
            "fmt": draw(st.sampled_from(["bgr24", "gray", "raw", "yuv420p"])),
            "slots": draw(st.integers(1, 1024)),
        }
    return build()


_FIGURES = st.dictionaries(st.from_regex(r"[a-z_][a-z0-9_]{0,31}", fullmatch=True),
                           st.one_of(st.integers(-(2**63), 2**63 - 1), st.floats()), max_size=16)

#: Well-formed requests of every op (ids included), for names and tokens made up on the spot.
_BROKER_REQUESTS = {
    "register": _register_fields(),
    "heartbeat": st.fixed_dictionaries(
        {"name": stream_names, "token": tokens},
        optional={"frames": st.integers(0, 2**63 - 1), "fps": st.floats(0, 1000),
                  "age": st.one_of(st.none(), st.floats(0, 100)),
                  "subscribers": st.integers(0, 100), "figures": _FIGURES}),
    "unregister": st.fixed_dictionaries({"name": stream_names, "token": tokens}),
    "lookup": st.fixed_dictionaries({"name": stream_names}),
    "list": st.just({}),
    "ping": st.just({}),
    "relay": st.fixed_dictionaries({
        "host": printable, "pid": st.integers(1, 2**31 - 1),
        "endpoint": st.builds("tcp://127.0.0.1:{}".format, st.integers(1, 65535))}),
}

#: Values that break each field: wrong types, out of range, malformed.
_BAD_FIELD = {
    "name": bad_stream_names,
    "host": st.one_of(st.sampled_from(["", "x" * 256, "a\nb", "\x00", "\x1b[31m"]),
                      scalars.filter(lambda v: not isinstance(v, str))),
    "pid": st.one_of(st.sampled_from([0, -1, 2**31, 2**32, 2**63 - 1, -(2**63), 2**64 - 1, True,
                                      1.0, "1"]), st.integers(-(2**63), 0),
                     st.integers(2**31, 2**64 - 1)),
    "segment": st.one_of(st.sampled_from(["", "/", "/etc.passwd", "framebus.x", "/.x", "/a/b.x",
                                          "/" + "a" * 300]), texts, blobs),
    "endpoint": st.one_of(st.sampled_from(["", "http://evil", "inproc://x", "udp://1.2.3.4:5",
                                           "tcp://" + "a" * 300, "tcp://\n"]), blobs, ints),
    "token": st.one_of(st.binary(max_size=15), st.binary(min_size=17, max_size=40), texts, ints,
                       st.none()),
    "generation": st.one_of(st.sampled_from([-1, 2**63, 2**64 - 1, True, 0.5]), texts),
    "shape": st.one_of(st.just([]), st.lists(st.integers(1, 9), min_size=5, max_size=9),
                       st.lists(st.sampled_from([0, -1, 2**31, True, 1.5, "4", None]),
                                min_size=1, max_size=4), texts, ints, big_containers),
    "dtype": st.one_of(st.sampled_from(["", "x" * 16, "\x00", "|u1\n"]), ints, blobs),
    "fmt": st.one_of(st.sampled_from(["", "y" * 16, "\x07", "bgr\t24"]), ints, blobs),
    "slots": st.one_of(st.sampled_from([0, -1, 1025, 10**9, True, 8.0, "8"]), st.none()),
    "frames": st.one_of(st.sampled_from([2**64 - 1, 1.5, "1", None, True]), blobs),
    "fps": st.one_of(st.sampled_from(["fast", None, [1]]), blobs),
    "age": st.one_of(st.sampled_from(["old", [], {}]), blobs),
    "subscribers": st.one_of(st.sampled_from([1.5, "2", None, 2**64 - 1]), blobs),
    "figures": st.one_of(
        st.dictionaries(st.text(max_size=40), values, min_size=1, max_size=20),
        st.integers(17, 40).map(lambda n: {f"f{i}": i for i in range(n)}),
        st.sampled_from([{"": 1}, {"1x": 1}, {"x" * 33: 1}, {"ok": "no"}, {"ok": True},
                         {"ok": None}, []]), scalars),
    "op": st.one_of(st.sampled_from(["", "explode", "LOOKUP", "register\0", "__init__",
                                     "_register", "handlers"]),
                    st.lists(st.text(max_size=4), max_size=2),
                    st.dictionaries(st.text(max_size=4), ints, max_size=2), scalars),
    "id": st.one_of(values, st.sampled_from([2**63, 2**64 - 1, True, 1.5])),
}


@st.composite
def broker_requests(draw, mutate: bool = True) -> dict:
    """A request map of any op: well-formed, or (*mutate*) with one to three fields removed,
    broken or added, the op itself broken more often than not."""
    op = draw(st.sampled_from(["register", "register", "register", "relay", "relay",
                               *sorted(_BROKER_REQUESTS)]))
    request = {"op": op, "id": draw(st.integers(-(2**63), 2**63 - 1)),
               **draw(_BROKER_REQUESTS[op])}
    if not mutate:
        return request
    for _ in range(draw(st.integers(1, 3))):
        how = draw(st.sampled_from(["drop", "break", "break", "add", "op", "op"]))
        if not request:
            how = "op"
        key = "op" if how == "op" else draw(st.sampled_from(sorted(request)))
        if how == "drop":
            request.pop(key)
        elif how in ("break", "op"):
            request[key] = draw(_BAD_FIELD.get(key, values))
        else:
            request[draw(st.text(max_size=10))] = draw(values)
    return request


def _flipped(draw, packed: bytes) -> bytes:
    data = bytearray(packed)
    for _ in range(draw(st.integers(1, 4))):
        data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    return bytes(data)


#: Byte-level damage to a well-formed request, the same for the broker's and the relay's.
_DAMAGE = {
    "truncated": lambda draw, packed: packed[:draw(st.integers(0, len(packed) - 1))],
    "flipped": _flipped,
    "not_a_map": lambda draw, packed: _pack(draw(values.filter(lambda v: not isinstance(v,
                                                                                       dict)))),
}


@st.composite
def _broker_payloads(draw) -> bytes:
    kind = draw(st.sampled_from(["request"] * 10 + ["valid"] * 3 + [
        "bytes", "truncated", "flipped", "not_a_map", "nested", "big", "huge", "oversized",
        "trailing", "ext"]))
    if kind == "request":
        return _pack(draw(broker_requests()))
    if kind == "valid":
        return _pack(draw(broker_requests(mutate=False)))
    if kind == "bytes":
        return draw(st.binary(max_size=256))
    packed = _pack(draw(broker_requests(mutate=False)))
    if kind in _DAMAGE:
        return _DAMAGE[kind](draw, packed)
    if kind == "nested":  # {"op": "lookup", "name": [[[...]]]}, past any sane depth
        return (b"\x82" + _pack("op") + _pack("lookup") + _pack("name")
                + _deeply_nested(draw(st.integers(1, 5000))))
    if kind == "big":  # strings, binaries, arrays, maps just over the broker's limits
        field = draw(st.sampled_from(["name", "host", "token", "x"]))
        value = draw(st.one_of(st.integers(4097, 20000).map(lambda n: "n" * n),
                               st.integers(4097, 20000).map(lambda n: b"b" * n),
                               st.integers(65, 1000).map(lambda n: [0] * n),
                               st.integers(65, 1000).map(lambda n: {f"k{i}": 0 for i in range(n)})))
        return _pack({"op": "register", "id": 1, field: value})
    if kind == "huge":  # under ZMQ_MAXMSGSIZE, so the broker itself must refuse it
        return _pack({"op": "ping", "id": 1, "pad": "p" * draw(st.integers(5000, 60000))})
    if kind == "oversized":  # over ZMQ_MAXMSGSIZE: ZeroMQ cuts the connection
        size = BROKER_LIMIT + draw(st.integers(1, 3 * BROKER_LIMIT))
        return _pack({"op": "ping", "pad": b"p" * size})
    if kind == "trailing":
        return packed + draw(st.binary(min_size=1, max_size=16))
    return draw(st.sampled_from(_EXT_PAYLOADS))


#: msgpack extension types where strings belong, and a timestamp of a length msgpack refuses.
_EXT_PAYLOADS = [
    _pack({"op": msgpack.ExtType(1, b"lookup"), "id": 1}),
    b"\x83" + _pack("op") + _pack("lookup") + _pack("name") + b"\xd6\xff\0\0\0\0"
    + _pack("id") + _pack(1),
    b"\x81" + _pack("op") + b"\xc7\x03\xff\x00\x00\x00",
    b"\x81\xa2op\xd4\x05\x00",
]


def broker_messages() -> st.SearchStrategy[list[bytes]]:
    """Multipart messages a DEALER may send the broker's ROUTER: envelopes of any shape around
    payloads of any kind, oversized parts (cut by ZeroMQ), and well-formed requests that
    register fake streams and relays, look up and heartbeat made-up names (the broker accepts
    or refuses those with a reason of their own)."""
    return _broker_messages()


@st.composite
def _broker_messages(draw) -> list[bytes]:
    kind = draw(st.sampled_from(["envelope"] * 10 + [
        "no_delimiter", "delimiter", "extra", "empty", "parts", "oversized"]))
    if kind in ("envelope", "no_delimiter", "delimiter", "extra"):
        payload = draw(_broker_payloads())
    if kind == "envelope":
        return [b"", payload]
    if kind == "no_delimiter":
        return [payload]
    if kind == "delimiter":  # not an empty one
        return [draw(st.binary(min_size=1, max_size=8)), payload]
    if kind == "extra":
        return [b"", payload, *draw(st.lists(st.binary(max_size=16), min_size=1, max_size=4))]
    if kind == "empty":
        return [b""]
    if kind == "parts":
        return draw(st.lists(st.binary(max_size=64), min_size=1, max_size=6))
    head = draw(st.lists(st.binary(max_size=8), max_size=2))  # an oversized part, anywhere
    return [*head, b"\0" * (BROKER_LIMIT + draw(st.integers(1, BROKER_LIMIT)))]


# -- the relay ----------------------------------------------------------------------------------

def _want_fields(streams: st.SearchStrategy[str]) -> st.SearchStrategy[dict]:
    return st.fixed_dictionaries({
        "v": st.just(wire.VERSION), "op": st.just("want"), "stream": streams,
        "codec": st.sampled_from(wire.CODECS), "quality": st.integers(1, 100),
        "token": st.one_of(st.none(), tokens), "after": st.integers(-1, 2**62 - 1)})


_BAD_WANT = {
    "v": st.one_of(st.sampled_from([0, 2, -1, True, 1.0, "1", None, [1]]), ints),
    "op": _BAD_FIELD["op"],
    "stream": bad_stream_names,
    "codec": st.one_of(st.sampled_from(["", "png", "RAW", "jpeg\0", "raw "]), scalars),
    "quality": st.one_of(st.sampled_from([0, 101, -1, True, 90.0, "90", None, 2**64 - 1]), ints),
    "token": st.one_of(st.binary(max_size=15), st.binary(min_size=17, max_size=32), texts, ints),
    "after": st.one_of(st.sampled_from([-2, 2**62, 2**63 - 1, -(2**63), True, 1.5, "1", None]),
                       ints),
}


@st.composite
def _relay_payloads(draw, streams: st.SearchStrategy[str]) -> bytes:
    kind = draw(st.sampled_from(["want"] * 6 + ["valid"] * 4 + [
        "bye", "bytes", "truncated", "flipped", "not_a_map", "nested", "big", "huge",
        "oversized", "trailing"]))
    want = draw(_want_fields(streams))
    if kind == "want":  # fields dropped, broken, added
        for _ in range(draw(st.integers(1, 3))):
            how = draw(st.sampled_from(["drop", "break", "break", "add"]))
            key = draw(st.sampled_from(sorted(want)))
            if how == "drop":
                want.pop(key)
            elif how == "break":
                want[key] = draw(_BAD_WANT.get(key, values))
            else:
                want[draw(st.text(max_size=10))] = draw(values)
        return _pack(want)
    if kind == "valid":
        return _pack(want)
    if kind == "bye":
        return wire.BYE
    if kind == "bytes":
        return draw(st.binary(max_size=128))
    packed = _pack(want)
    if kind in _DAMAGE:
        return _DAMAGE[kind](draw, packed)
    if kind == "nested":
        return b"\x81" + _pack("v") + _deeply_nested(draw(st.integers(1, 1000)))
    if kind == "big":  # over the request's own limits, well under the wire's
        field = draw(st.sampled_from(["stream", "token", "x"]))
        value = draw(st.one_of(st.integers(129, 400).map(lambda n: "s" * n),
                               st.integers(33, 400).map(lambda n: b"t" * n),
                               st.integers(9, 100).map(lambda n: [0] * n)))
        return _pack({**want, field: value})
    if kind == "huge":  # over MAX_REQUEST, under ZMQ_MAXMSGSIZE: the relay itself refuses it
        return _pack({**want, "pad": "p" * draw(st.integers(wire.MAX_REQUEST, RELAY_LIMIT - 200))})
    if kind == "oversized":  # over ZMQ_MAXMSGSIZE: ZeroMQ cuts the connection
        return _pack({**want, "pad": b"p" * (RELAY_LIMIT + draw(st.integers(1, 8000)))})
    return packed + draw(st.binary(min_size=1, max_size=16))  # trailing bytes


def relay_messages(streams: tuple[str, ...] = ()) -> st.SearchStrategy[list[bytes]]:
    """Messages a DEALER may send a relay: one-part requests of every kind (garbage,
    truncated, oversized, wrong versions, bad fields, ``bye``), multi-part ones, and valid
    ``want``s for stream names that do not exist, or for *streams*, which do."""
    missing = stream_names.filter(lambda name: name not in streams)
    names = st.one_of(missing, st.sampled_from(streams)) if streams else missing
    payloads = _relay_payloads(names)
    oversized = st.integers(1, 4 * RELAY_LIMIT).map(lambda n: b"\0" * (RELAY_LIMIT + n))
    return st.one_of(
        *[payloads.map(lambda p: [p])] * 8,
        st.lists(payloads, min_size=2, max_size=4),
        st.lists(st.binary(max_size=32), min_size=0, max_size=4).map(lambda parts: [b"", *parts]),
        st.tuples(st.lists(st.binary(max_size=8), max_size=2), oversized).map(
            lambda t: [*t[0], t[1]]),
    )


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


def lying_descriptors(real: RingFacts) -> st.SearchStrategy[bytes]:
    """Messages, topic included, as a producer's PUB would send them, each a lie about the
    ring *real*: wrong topics, garbage after the right one, and well-formed descriptors with
    fields the ring contradicts: stream, token, generation, shape, dtype, format, slot (out of
    range, or not seq % slots), seq (never written, or a replay), pts and timestamp."""
    right_topic = topic(real.stream)
    others = stream_names.filter(lambda name: name != real.stream)
    if real.frame is None:
        # Which frame it names is a guess: most never written; a stranger cannot know
        # when one was, so its timestamp is a lie too.
        seqs = st.integers(0, NEVER_WRITTEN - 1)
        frames = st.tuples(seqs, seqs, st.integers(0, 2**63 - 1))
    else:
        frames = st.just(real.frame)

    @st.composite
    def truth(draw) -> dict:
        seq, pts, timestamp_ns = draw(frames)
        return {"v": 1, "stream": real.stream, "generation": real.generation,
                "token": real.token, "seq": seq, "slot": seq % real.slots, "pts": pts,
                "time_base": None, "timestamp_ns": timestamp_ns, "shape": list(real.shape),
                "dtype": real.dtype, "fmt": real.fmt}

    def other_than(value, strategy):
        return strategy.filter(lambda v: v != value)

    def other_pts(pts):  # a ring records no pts as 0: None and 0 are the same to it
        same = (None, 0) if pts in (None, 0) else (pts,)
        return (st.none() | st.integers(-(2**63), 2**63 - 1)).filter(lambda v: v not in same)

    lies = {
        "stream": lambda d: others,
        "token": lambda d: other_than(real.token, tokens),
        "generation": lambda d: other_than(real.generation, st.integers(0, 2**63 - 1)),
        "shape": lambda d: other_than(list(real.shape), shapes),
        "dtype": lambda d: other_than(real.dtype, st.sampled_from(["|u1", "<u2", "|i1", "<f4",
                                                                   "u1", "<u8"])),
        "fmt": lambda d: other_than(real.fmt, st.sampled_from(["bgr24", "rgb24", "gray",
                                                               "yuv420p", "bgra", "raw", "x"])),
        "pts": lambda d: other_pts(d["pts"]),
        "timestamp_ns": lambda d: other_than(d["timestamp_ns"], st.integers(0, 2**63 - 1)),
    }

    @st.composite
    def well_formed_lie(draw) -> bytes:
        d = draw(truth())
        fields = draw(st.lists(st.sampled_from([*lies, "slot", "seq"]), unique=True,
                               min_size=0 if real.frame is None else 1, max_size=3))
        for field in fields:
            if field == "slot":  # out of range, or not seq % slots
                wrong = [s for s in range(min(real.slots + 3, 1024)) if s != d["seq"] % real.slots]
                d["slot"] = draw(st.sampled_from(wrong) | st.integers(real.slots, 1023)
                                 if real.slots < 1024 else st.sampled_from(wrong))
            elif field == "seq":  # never written, the next ones (not yet), or a replay
                seq = d["seq"]
                d["seq"] = draw(st.integers(NEVER_WRITTEN, 2**62) | st.integers(
                    max(0, seq - real.slots - 2), seq + 3).filter(lambda s, seq=seq: s != seq))
                d["slot"] = d["seq"] % real.slots
            else:
                d[field] = draw(lies[field](d))
        return right_topic + _pack(d)

    @st.composite
    def garbage_after_topic(draw) -> bytes:
        d = draw(truth())
        packed = _pack(d)
        kind = draw(st.sampled_from(["bytes", "truncated", "not_a_map", "broken", "oversized",
                                     "trailing", "empty"]))
        if kind == "bytes":
            tail = draw(st.binary(max_size=200))
        elif kind == "truncated":
            tail = packed[:draw(st.integers(0, len(packed) - 1))]
        elif kind == "not_a_map":
            tail = _pack(draw(values.filter(lambda v: not isinstance(v, dict))))
        elif kind == "broken":  # a field missing, of the wrong type or out of range
            key = draw(st.sampled_from(sorted(d)))
            wrong = values.filter(lambda v: type(v) is not type(d[key]) and v is not None) | \
                st.sampled_from([-1, 2**63, 2**64 - 1, "", [], True])
            if key == "time_base":  # not in the ring: only a malformed one can be caught
                d[key] = draw(st.sampled_from([[1, 0], [0, 1], [1], [1, 2, 3], "1/90000", 5,
                                               [1.5, 2], [True, 1]]))
            elif draw(st.booleans()) and key != "pts":  # no pts is nil, and fine
                del d[key]
            else:
                d[key] = draw(wrong.filter(lambda v: v != d[key]))
            tail = _pack(d)
        elif kind == "oversized":
            tail = _pack({**d, "pad": "p" * draw(st.integers(1024, 4000))})
        elif kind == "trailing":
            tail = packed + draw(st.binary(min_size=1, max_size=8))
        else:
            tail = b""
        return right_topic + tail

    @st.composite
    def wrong_topic(draw) -> bytes:
        body = _pack(draw(truth()))
        head = draw(st.one_of(
            others.map(topic),
            st.just(real.stream.encode()),  # no NUL
            st.just(real.stream.encode() + b"x\0"),  # a longer name starting with this one
            st.just(b"\0"), st.just(b""), st.binary(max_size=8)))
        return head + body

    return st.one_of(well_formed_lie(), well_formed_lie(), well_formed_lie(),
                     garbage_after_topic(), wrong_topic())


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


def oversized(message: list[bytes], limit: int) -> bool:
    """Whether ZeroMQ drops a connection that carries *message*: a part over *limit*."""
    return any(len(part) > limit for part in message)


# -- probers ------------------------------------------------------------------------------------

class _Dealer:
    """A DEALER on a service, watched for the service dropping its connection."""

    def __init__(self, context: zmq.Context, address: str) -> None:
        self.socket = context.socket(zmq.DEALER)
        self.socket.linger = 0
        self.socket.sndtimeo = 1000
        self._monitor = self.socket.get_monitor_socket(zmq.EVENT_DISCONNECTED)
        self.socket.connect(address)
        self._poller = zmq.Poller()
        self._poller.register(self.socket, zmq.POLLIN)
        self._poller.register(self._monitor, zmq.POLLIN)

    def exchange(self, message: list[bytes], timeout: float) -> list[bytes] | str:
        """Send *message*; the reply, or CUT if the connection was dropped, or SILENT."""
        return self.wait(timeout) if self.send(message) else SILENT

    def send(self, message: list[bytes]) -> bool:
        try:
            self.socket.send_multipart(message)
        except zmq.Again:
            return False  # not even connected within sndtimeo
        return True

    def wait(self, timeout: float) -> list[bytes] | str:
        """The next reply within *timeout*, or CUT if the connection was dropped, or SILENT."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            events = dict(self._poller.poll(max(1, int(left * 1000))))
            if self.socket in events:
                return self.socket.recv_multipart()
            if self._monitor in events and \
                    recv_monitor_message(self._monitor)["event"] == zmq.EVENT_DISCONNECTED:
                return CUT
        return SILENT

    def close(self) -> None:
        self.socket.disable_monitor()
        self._monitor.close(linger=0)
        self.socket.close(linger=0)


class _Prober:
    """Sends one message at a time on one DEALER; connects a fresh one after a cut, a
    silence or a garbled reply, so a late reply is never taken for the next one's."""

    def __init__(self, address: str, timeout: float) -> None:
        self.address = address
        self.timeout = timeout
        self._context = zmq.Context()
        self._dealer = _Dealer(self._context, address)
        self._checker = _Dealer(self._context, address)  # for alive(), apart from the probes
        #: The last reply, parsed: the broker's map, or the relay's {"code", "error"} or
        #: {"frame": <descriptor bytes>}; None when there was none.
        self.reply: dict | None = None
        self.counts: dict[str, int] = {}

    def probe(self, message: list[bytes]) -> str:
        """Send *message*; return what came of it (REFUSED, ANSWERED, CUT, SILENT, GARBLED)."""
        outcome = self._probe(message)
        self.counts[outcome] = self.counts.get(outcome, 0) + 1
        if outcome not in (REFUSED, ANSWERED):
            self._dealer.close()
            self._dealer = _Dealer(self._context, self.address)
        return outcome

    def _probe(self, message: list[bytes]) -> str:
        raise NotImplementedError

    def close(self) -> None:
        self._dealer.close()
        self._checker.close()
        self._context.term()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class BrokerProber(_Prober):
    """Probes a broker (framebus/broker.py): every message but an oversized one must be
    answered, refused with a reason, or cut."""

    limit = BROKER_LIMIT
    _ids = itertools.count(1)

    def __init__(self, address: str, timeout: float = 1.0) -> None:
        super().__init__(address, timeout)

    def _probe(self, message: list[bytes]) -> str:
        got = self._dealer.exchange(message, self.timeout)
        if isinstance(got, str):
            self.reply = None
            return got
        self.reply = _broker_reply(got)
        return _classify_broker(self.reply)

    def alive(self, timeout: float = 1.0) -> bool:
        """Whether the broker answers a ping within *timeout* seconds."""
        rid = next(self._ids)
        got = self._checker.exchange([b"", _pack({"op": "ping", "id": rid})], timeout)
        while not isinstance(got, str):
            reply = _broker_reply(got)
            if reply is not None and reply.get("id") == rid:
                return reply.get("ok") is True
            got = self._checker.wait(timeout)  # a late answer to an earlier ping
        self._checker.close()
        self._checker = _Dealer(self._context, self.address)
        return False


def _broker_reply(frames: list[bytes]) -> dict | None:
    if len(frames) != 2 or frames[0] != b"":
        return None
    try:
        reply = msgpack.unpackb(frames[1], raw=False)
    except Exception:
        return None
    return reply if isinstance(reply, dict) else None


def _classify_broker(reply: dict | None) -> str:
    if reply is None:
        return GARBLED
    if reply.get("ok") is True:
        return ANSWERED
    if reply.get("ok") is False and isinstance(reply.get("code"), str) \
            and isinstance(reply.get("error"), str) and reply["error"]:
        return REFUSED
    return GARBLED


class RelayProber(_Prober):
    """Probes a relay (framebus/remote/relay.py). A ``bye`` has no reply by protocol: it
    counts as answered when the relay then refuses a bad request on the same connection."""

    limit = RELAY_LIMIT
    #: A request any relay refuses at once, whatever it serves: a want with no stream name.
    MUST_REFUSE = [_pack({"v": wire.VERSION, "op": "want", "stream": "", "codec": "raw",
                          "quality": 90, "token": None, "after": -1})]

    def __init__(self, address: str, timeout: float = 2.0) -> None:
        super().__init__(address, timeout)

    def _probe(self, message: list[bytes]) -> str:
        if len(message) == 1 and _is_bye(message[0]):
            # No reply, as it should be: the first one to come must be the refusal of the
            # request sent right after, which the relay reads next.
            self._dealer.send(message)
            got = self._dealer.exchange(self.MUST_REFUSE, self.timeout)
            if isinstance(got, str):
                self.reply = None
                return got
            self.reply = _relay_reply(got)
            said = self.reply and self.reply.get("code") == "bad_request" and \
                "$.stream" in self.reply["error"]
            return ANSWERED if said else GARBLED
        got = self._dealer.exchange(message, self.timeout)
        if isinstance(got, str):
            self.reply = None
            return got
        self.reply = _relay_reply(got)
        if self.reply is None:
            return GARBLED
        return REFUSED if "code" in self.reply else ANSWERED

    def alive(self, timeout: float = 1.0) -> bool:
        """Whether the relay refuses a bad request (an empty stream name) within *timeout*."""
        got = self._checker.exchange(self.MUST_REFUSE, timeout)
        if isinstance(got, str) or (reply := _relay_reply(got)) is None or "code" not in reply:
            self._checker.close()
            self._checker = _Dealer(self._context, self.address)
            return False
        return True


def _is_bye(payload: bytes) -> bool:
    try:
        return wire.parse_request(payload) is None
    except Exception:
        return False


def _relay_reply(parts: list[bytes]) -> dict | None:
    if len(parts) == 2 and parts[0] == wire.ERROR:
        try:
            code, error = wire.parse_error(parts[1])
        except Exception:
            return None
        return {"code": code, "error": error} if error else None
    if len(parts) == 4 and parts[0] == wire.FRAME:
        return {"frame": parts[1], "codec": parts[2], "bytes": len(parts[3])}
    return None
