"""The messages between a relay and its remote subscribers. Documented in docs/protocol.md.

A subscriber's DEALER sends one-part msgpack requests; each ``want`` is one credit::

    {"v": 1, "op": "want", "stream": "cam1", "codec": "raw" | "jpeg", "quality": 1..100,
     "token": <16 bytes> | nil, "after": <seq> | -1}

"Send me the newest frame of cam1 that I do not have": newer than ``after`` in the
ring ``token``, or any frame of another ring (a restarted producer). ``{"v": 1,
"op": "bye"}`` says the subscriber is leaving.

The relay answers a credit with one frame, when there is one::

    [b"frame", <descriptor>, <codec: b"raw" | b"jpeg">, <payload>]
    [b"slot", <descriptor>, b"raw", <payload>]  then, later,  [b"check", b"\x01" | b"\x00"]

where the descriptor is the producer's own (framebus/protocol/descriptor.py) and the
payload the pixels (raw, exactly the descriptor's shape and dtype) or a JPEG of
them. A ``slot`` frame was sent straight from the ring slot: it may be handed out only
once its ``check`` says 1 (the slot still held the frame once it was sent); 0 means the
writer reused the slot meanwhile: the frame is discarded and the credit stays unspent.
The relay sends no other frame to a subscriber between a ``slot`` and its ``check``.
A request it cannot serve is answered ``[b"error", msgpack {"code", "error"}]``.

A packet stream is asked for by ``{"v": 1, "op": "packets", "stream", "token", "after",
"batches", "preroll"}``: "every packet of cam1 after ``after`` of ring ``token``; I have read
``batches`` batches from you". The relay answers with batches in order,
``[b"packets", <msgpack PacketBatch>, <the packets' bytes, one after another>]``
(framebus/protocol/relay_packets.py), at most MAX_BATCHES_AHEAD beyond the count the last
request gave; the same request, sent again, is the subscriber's acknowledgement.
"""

from __future__ import annotations

from typing import Annotated, Literal, get_args

import msgspec
from msgspec import Meta

from .fields import Code, Message, StreamName, Token, check_printable, decode, printable

VERSION = 1
Codec = Literal["raw", "jpeg"]
CODECS: tuple[str, ...] = get_args(Codec)
MAX_REQUEST = 512
#: Bytes, at most, of an error reply.
MAX_ERROR = 8192
FRAME, SLOT, CHECK, ERROR = b"frame", b"slot", b"check", b"error"
PACKETS = b"packets"
#: Batches of packets the relay sends beyond what a subscriber says it has read: below the
#: socket's high-water mark, so that ZeroMQ never drops one (a ROUTER drops, silently, what
#: a full pipe cannot take).
MAX_BATCHES_AHEAD = 4

Quality = Annotated[int, Meta(ge=1, le=100)]
#: The seq of the last frame received, or -1 for none.
After = Annotated[int, Meta(ge=-1, le=2**62 - 1)]


class _Request(msgspec.Struct, tag_field="op", kw_only=True, frozen=True,
               forbid_unknown_fields=True):
    #: Required on the wire: parse_request reads it first, alone (_VERSION).
    v: Literal[1] = 1


class Want(_Request, tag="want", frozen=True):
    """One credit: the newest frame of *stream* that the subscriber does not have."""

    stream: StreamName
    codec: Codec = "raw"
    quality: Quality = 90
    token: Token | None = None
    after: After = -1

    def pack(self) -> bytes:
        return _ENCODER.encode(self)

    @property
    def setting(self) -> tuple[str, int]:
        """What the payload is made with: frames are encoded once per setting."""
        return (self.codec, self.quality if self.codec == "jpeg" else 0)


class PacketsWant(_Request, tag="packets", frozen=True):
    """Every packet of *stream* after *after* of ring *token* (none: from where *preroll*
    says), from a subscriber that has read *batches* batches on this connection."""

    stream: StreamName
    token: Token | None = None
    after: After = -1
    batches: Annotated[int, Meta(ge=0, le=2**62)] = 0
    preroll: Annotated[float, Meta(ge=0, le=3600)] = 0.0

    def pack(self) -> bytes:
        return _ENCODER.encode(self)


class Bye(_Request, tag="bye", frozen=True):
    """The subscriber is leaving."""


class ErrorReply(msgspec.Struct, forbid_unknown_fields=True):
    """The msgpack part of ``[b"error", ...]``."""

    code: Code
    error: Message

    def __post_init__(self) -> None:
        check_printable(self, "error")


class _Version(msgspec.Struct):
    """Any message's version, the rest skipped: msgspec fills in a missing field's default,
    and the version must be there."""

    v: Literal[1]


_ENCODER = msgspec.msgpack.Encoder()
_VERSION = msgspec.msgpack.Decoder(_Version)
_REQUEST = msgspec.msgpack.Decoder(Want | PacketsWant | Bye)
_ERROR = msgspec.msgpack.Decoder(ErrorReply)
BYE = _ENCODER.encode(Bye())


def parse_request(data: bytes | memoryview) -> Want | PacketsWant | None:
    """A request: a Want or PacketsWant, or None for bye. ProtocolError, with the reason,
    for anything else."""
    decode(_VERSION, data, "request", MAX_REQUEST)
    request = decode(_REQUEST, data, "request", MAX_REQUEST)
    return None if isinstance(request, Bye) else request


def error_reply(code: str, message: str) -> list[bytes]:
    return [ERROR, _ENCODER.encode(ErrorReply(code, printable(message)[:1024]))]


def parse_error(data: bytes | memoryview) -> tuple[str, str]:
    """The code and message of an error reply; ProtocolError if it is malformed."""
    reply = decode(_ERROR, data, "error reply from the relay", MAX_ERROR)
    return reply.code, reply.error
