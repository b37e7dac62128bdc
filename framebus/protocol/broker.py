"""The broker's messages: requests, replies and StreamInfo. Documented in docs/protocol.md.

Requests and replies are msgpack maps on a DEALER/ROUTER pair. A request carries ``op``
(the tag of its type below) and an ``id`` that the reply echoes; a reply carries ``ok``
and, when it is false, ``code`` (for programs) and ``error`` (for people). Both sides
decode strictly through these types: the broker its requests, a client the replies, so
that neither trusts whatever answers.
"""

from __future__ import annotations

from bisect import bisect_right
from typing import Annotated, Any, Literal, TypeVar

import msgspec
from msgspec import Meta

from .fields import (
    Code,
    Count,
    Endpoint,
    Int64,
    Message,
    Pid,
    Secret,
    Shape,
    Slots,
    StreamName,
    TcpEndpoint,
    Text,
    Token,
    Word,
    check_printable,
    decode,
)

#: The broker's ZMQ_MAXMSGSIZE: ZeroMQ drops the connection of whoever sends more.
MAX_MESSAGE = 64 * 1024
#: Bytes, at most, of a request the broker decodes (the largest valid one has about 1000).
MAX_REQUEST = 4096
#: Bytes, at most, of a reply a client decodes: a page of a list, or a whole list of old.
MAX_REPLY = 16 * MAX_MESSAGE
#: The most streams and relays the broker keeps unless told otherwise. Chosen by
#: bench/broker.py: 3,200 streams on 100 hosts heartbeating every 0.5 s cost the broker a
#: quarter of a core and 150 MB, with lookups answered within 10 ms at p99; these caps leave
#: a site that much and a margin, and still bound what a flood can make the broker hold.
MAX_STREAMS = 4096
MAX_RELAYS = 256
MAX_FIGURES = 16
#: The most entries (streams, then relays) in one page of a paged `list`. The largest entry
#: the fields allow weighs about 6 KiB (a host, endpoints and figure names of 4-byte
#: characters), so a page of them still fits MAX_REPLY, whatever the caps grow to; a whole
#: list of 256 such streams does not (1.5 MiB), hence pages (tests/test_refusals.py fills a
#: broker with them and lists it).
LIST_PAGE = 128

FigureName = Annotated[str, Meta(min_length=1, max_length=32, pattern=r"^[^\W\d]\w*\Z")]
#: A producer's own figures (a decoder's decode_fps, dropped, ...): identifiers to numbers.
Figures = Annotated[dict[FigureName, int | float], Meta(max_length=MAX_FIGURES)]
Segment = Annotated[str, Meta(max_length=255, pattern=r"^/[A-Za-z0-9][A-Za-z0-9._-]{0,200}\Z")]
#: Where a page of a list starts: "s:" and the stream name after which it starts, or "r:" and
#: the host of the relay after which it starts (the streams were all on earlier pages).
#: Printable, as checked in __post_init__.
Cursor = Annotated[str, Meta(min_length=3, max_length=257, pattern=r"^[sr]:")]


#: What a stream carries: decoded pixels in a frame ring, or compressed packets in a packet
#: ring (framebus/packets/). A packet stream shares its pixel stream's name; a message
#: without ``kind`` is about frames, as before packets existed.
Kind = Literal["frames", "packets"]


def entry_key(name: str, kind: str) -> str:
    """The broker's key of a stream: its name, and for packets "/packets" after it ('/' is in
    no stream name, so no two keys clash)."""
    return name if kind == "frames" else f"{name}/packets"


def _check_figures(figures: dict[str, Any]) -> None:
    if not all(name.isidentifier() for name in figures):
        raise ValueError("Expected identifiers as the keys of field `figures`")


class Registration(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """What a producer registers: its stream, its ring and where its descriptors are."""

    name: StreamName
    host: Text
    pid: Pid
    #: The ring's shared-memory name: it ends in "." and the stream's name.
    segment: Segment
    #: Where the descriptors are published.
    endpoint: Endpoint
    token: Token
    generation: Count
    shape: Shape
    dtype: Word
    fmt: Word
    slots: Slots
    kind: Kind = "frames"

    def __post_init__(self) -> None:
        check_printable(self, "host", "endpoint")
        if not self.segment.endswith("." + self.name):
            raise ValueError(f"Expected field `segment` to end in '.{self.name}'")


class StreamInfo(Registration, kw_only=True, omit_defaults=True):
    """What the broker knows about a stream. Defaults stay off the wire, so that a client
    older than ``kind`` still reads a frame stream's."""

    alive: bool = True
    #: Producer figures from its last heartbeat.
    frames: Int64 = 0
    fps: float = 0.0
    #: Seconds since the producer's last frame, or None before the first.
    age: float | None = None
    #: Subscribers connected to the producer's descriptors.
    subscribers: Int64 = 0
    #: The producer's own figures, e.g. a decoder's decode_fps, dropped, decode_errors,
    #: reconnects.
    figures: Figures = msgspec.field(default_factory=dict)
    #: The relay serving the stream's host to other hosts, if one runs there.
    relay: TcpEndpoint | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_figures(self.figures)

    def to_wire(self) -> dict[str, Any]:
        """As a plain dict (shape a list), e.g. for JSON."""
        return {**msgspec.structs.asdict(self), "shape": list(self.shape),
                "figures": dict(self.figures)}


# -- requests: the tag ``op`` says which -----------------------------------------------------

class _Request(msgspec.Struct, tag_field="op", kw_only=True, forbid_unknown_fields=True):
    #: The client's own, echoed in the reply if it is an int64 (as it is from BrokerClient).
    id: Any = None


class Register(Registration, tag_field="op", tag="register"):
    #: Proves later requests for the stream come from its producer; StreamInfo lacks it.
    secret: Secret
    id: Any = None

    def info(self) -> StreamInfo:
        return StreamInfo(**{name: getattr(self, name) for name in Registration.__struct_fields__})


class Heartbeat(_Request, tag="heartbeat"):
    name: StreamName
    token: Token
    secret: Secret
    kind: Kind = "frames"
    frames: Int64 = 0
    fps: float = 0.0
    age: float | None = None
    subscribers: Int64 = 0
    figures: Figures = msgspec.field(default_factory=dict)

    def __post_init__(self) -> None:
        _check_figures(self.figures)


class Unregister(_Request, tag="unregister"):
    name: StreamName
    token: Token
    secret: Secret
    kind: Kind = "frames"


class Lookup(_Request, tag="lookup"):
    name: StreamName
    kind: Kind = "frames"


class Listing(_Request, tag="list"):
    """Every stream and relay the broker knows, in one reply; or, given ``limit``, in pages.

    A page holds at most ``limit`` (or LIST_PAGE, if less) entries, streams by name first,
    then relays by host, and its ``next`` is the ``after`` of the next page. A cursor, not an
    offset: a stream that registers or is forgotten between two pages shifts nothing.
    """

    limit: Annotated[int, Meta(ge=1, le=2**63 - 1)] | None = None
    after: Cursor | None = None
    #: Only the streams of this host, and its relay (a relay wants no more).
    host: Text | None = None
    #: Which streams: frame streams only (the default, which clients older than packet
    #: streams understand), packet streams only, or both.
    kind: Literal["frames", "packets", "all"] = "frames"

    def shows(self, info: StreamInfo) -> bool:
        """Whether this listing shows stream *info*."""
        return self.host in (None, info.host) and self.kind in ("all", info.kind)

    def __post_init__(self) -> None:
        check_printable(self, "host", "after")


class Ping(_Request, tag="ping"):
    pass


class Relay(_Request, tag="relay"):
    """A relay says it serves its host's streams (sent again every heartbeat)."""

    host: Text
    endpoint: TcpEndpoint
    pid: Pid

    def __post_init__(self) -> None:
        check_printable(self, "host", "endpoint")


Request = Register | Heartbeat | Unregister | Lookup | Listing | Ping | Relay


# -- replies -----------------------------------------------------------------------------------

class Reply(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A request done: the reply of register, heartbeat, unregister and relay."""

    ok: bool = True
    id: Int64 | None = None

    def __post_init__(self) -> None:
        if self.ok is not True:
            raise ValueError("Expected field `ok` to be true")


class LookupReply(Reply, kw_only=True):
    stream: StreamInfo


class RelayInfo(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    host: Text
    endpoint: TcpEndpoint
    pid: Pid
    alive: bool

    def __post_init__(self) -> None:
        check_printable(self, "host", "endpoint")


class ListReply(Reply, kw_only=True):
    """The reply to a `list` without ``limit``: everything, as before pages."""

    streams: Annotated[list[StreamInfo], Meta(max_length=MAX_STREAMS)]
    relays: Annotated[list[RelayInfo], Meta(max_length=MAX_RELAYS)]


class ListPage(ListReply, kw_only=True):
    """The reply to a `list` with ``limit``; decodes a ListReply too (``next`` then None)."""

    streams: Annotated[list[StreamInfo], Meta(max_length=max(MAX_STREAMS, LIST_PAGE))]
    relays: Annotated[list[RelayInfo], Meta(max_length=max(MAX_RELAYS, LIST_PAGE))]
    #: The ``after`` of the next page; None on the last.
    next: Cursor | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        check_printable(self, "next")


class PingReply(Reply, kw_only=True):
    host: Text

    def __post_init__(self) -> None:
        super().__post_init__()
        check_printable(self, "host")


class Refusal(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A request refused: ``code`` for programs, ``error`` for people."""

    ok: bool = False
    code: Code
    error: Message
    id: Int64 | None = None

    def __post_init__(self) -> None:
        if self.ok is not False:
            raise ValueError("Expected field `ok` to be false")
        check_printable(self, "error")


#: The reply each op gets when it is done (the others: Reply).
REPLIES: dict[str, type[Reply]] = {"lookup": LookupReply, "list": ListPage, "ping": PingReply}
R = TypeVar("R", bound=Reply)


class _Head(msgspec.Struct):
    """What a reply is before it is decoded: the rest skipped."""

    ok: bool
    id: Any = None


class _Id(msgspec.Struct):
    id: Any = None


def _enc_hook(value: Any) -> Any:
    # A float of its own kind (numpy's float64, say, in a producer's figures) is a float.
    if isinstance(value, float):
        return float(value)
    raise TypeError(f"cannot encode {type(value).__name__}")


_ENCODER = msgspec.msgpack.Encoder(enc_hook=_enc_hook)
_REQUEST = msgspec.msgpack.Decoder(Request)
_HEAD = msgspec.msgpack.Decoder(_Head)
_ID = msgspec.msgpack.Decoder(_Id)
_REPLY_TYPES: list[type] = [Refusal, Reply, *REPLIES.values()]
_REPLIES: dict[type, msgspec.msgpack.Decoder[Any]] = {
    t: msgspec.msgpack.Decoder(t) for t in _REPLY_TYPES}


def encode(message: msgspec.Struct | dict[str, Any]) -> bytes:
    return _ENCODER.encode(message)


def decode_request(payload: bytes) -> Request:
    """The request in *payload*; ProtocolError, naming the field, if it is malformed."""
    return decode(_REQUEST, payload, "request", MAX_REQUEST)


def request_id(payload: bytes) -> int | None:
    """The id of a request, however malformed the rest, if it is an int64: for the refusal."""
    try:
        rid = _ID.decode(payload).id
    except (msgspec.DecodeError, RecursionError):
        return None
    return rid if type(rid) is int and -(2**63) <= rid < 2**63 else None


def reply_id(payload: bytes) -> Any:
    """The id a reply echoes, however malformed the rest (None if there is none)."""
    try:
        return _ID.decode(payload).id if len(payload) <= MAX_REPLY else None
    except (msgspec.DecodeError, RecursionError):
        return None


def decode_reply(payload: bytes, expected: type[R]) -> R | Refusal:
    """The broker's reply: the *expected* Reply, or a Refusal; ProtocolError if neither."""
    what = f"reply from the broker ({expected.__name__})"
    head = decode(_HEAD, payload, what, MAX_REPLY)
    return decode(_REPLIES[expected if head.ok else Refusal], payload, what, MAX_REPLY)


def page(names: list[str], hosts: list[str], after: str | None,
          limit: int | None) -> tuple[list[str], list[str], str | None]:
    """The streams and relays of a page (of all, with no *limit*) from the sorted *names* and
    *hosts*, and the cursor of the next page (None: this is the last)."""
    kind, key = (after[0], after[2:]) if after else ("s", "")
    names = [] if kind == "r" else names[bisect_right(names, key):]
    hosts = hosts[bisect_right(hosts, key):] if kind == "r" else hosts
    if limit is None:
        return names, hosts, None
    streams = names[:limit]
    relays = hosts[:limit - len(streams)]
    if len(streams) == len(names) and len(relays) == len(hosts):
        return streams, relays, None
    return streams, relays, f"r:{relays[-1]}" if relays else f"s:{streams[-1]}"
