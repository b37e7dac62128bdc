"""The field types every message is made of, with their limits, and the one way to decode.

Each type is an ``Annotated`` msgspec type: its ``Meta`` carries the limits, so that a
decoder enforces them and framebus.testing.hostile derives valid examples from them. A
rule no ``Meta`` can state (a printable host, a segment ending in its stream's name) is
checked in the message's ``__post_init__``, which msgspec runs on decoding too.
"""

from __future__ import annotations

from typing import Annotated, TypeVar

import msgspec
from msgspec import Meta

from ..errors import ProtocolError
from ..names import MAX_NAME_LENGTH, NAME_PATTERN
from ..shm.layout import MAX_NDIM

#: Slots in a ring, at most; a slot index is below it.
MAX_SLOTS = 1024
#: Strings that are printable (``str.isprintable``) start with no C0 or C1 control
#: character: the pattern refuses those at once, __post_init__ the rest.
NO_CONTROLS = r"^[^\x00-\x1f\x7f-\x9f]*\Z"

Int64 = Annotated[int, Meta(ge=-(2**63), le=2**63 - 1)]
#: A count or a time that cannot be negative.
Count = Annotated[int, Meta(ge=0, le=2**63 - 1)]
#: A frame's sequence number (and a relay request's ``after``: the last one received).
Seq = Annotated[int, Meta(ge=0, le=2**62)]
Slot = Annotated[int, Meta(ge=0, le=MAX_SLOTS - 1)]
Slots = Annotated[int, Meta(ge=1, le=MAX_SLOTS)]
#: A presentation timestamp: an int64, but for FFmpeg's AV_NOPTS_VALUE (-2**63), which is
#: what a ring stores for "none" and which travels as nil instead.
Pts = Annotated[int, Meta(ge=-(2**63) + 1, le=2**63 - 1)]
#: pid_t is 32 bits, and the kernel is asked about local pids.
Pid = Annotated[int, Meta(ge=1, le=2**31 - 1)]
Dim = Annotated[int, Meta(ge=1, le=2**31 - 1)]
Shape = Annotated[tuple[Dim, ...], Meta(min_length=1, max_length=MAX_NDIM)]
#: One term of a time base [num, den].
TimeBaseTerm = Annotated[int, Meta(ge=1, le=2**31)]
TimeBase = tuple[TimeBaseTerm, TimeBaseTerm]
Token = Annotated[bytes, Meta(min_length=16, max_length=16)]
#: What only a producer and its broker know (framebus/trust.py): never in a reply.
Secret = Annotated[bytes, Meta(min_length=16, max_length=16)]
#: Valid stream names: framebus/names.py's rule (and reasons).
StreamName = Annotated[str, Meta(min_length=1, max_length=MAX_NAME_LENGTH,
                                 pattern=rf"^{NAME_PATTERN}\Z")]
#: A numpy dtype string or a pixel format: 1 to 15 printable ASCII characters.
Word = Annotated[str, Meta(min_length=1, max_length=15, pattern=r"^[ -~]+\Z")]
#: A host id, an endpoint, a segment: 1 to 255 printable characters (``__post_init__``
#: calls check_printable).
Text = Annotated[str, Meta(min_length=1, max_length=255, pattern=NO_CONTROLS)]
#: Where a service is (printable too: __post_init__ checks).
Endpoint = Annotated[str, Meta(min_length=1, max_length=255, pattern=r"^(ipc|tcp)://")]
TcpEndpoint = Annotated[str, Meta(min_length=1, max_length=255, pattern=r"^tcp://")]
#: A refusal's code, for programs: a newer service may send codes this one does not know.
Code = Annotated[str, Meta(min_length=1, max_length=32, pattern=r"^[a-z_]+\Z")]
#: A refusal's message, for people.
Message = Annotated[str, Meta(min_length=1, max_length=1024)]

T = TypeVar("T")


def check_printable(message: msgspec.Struct, *fields: str) -> None:
    """For __post_init__: the named str fields (None skipped) must be printable."""
    for name in fields:
        value = getattr(message, name)
        if value is not None and not value.isprintable():
            raise ValueError(f"Expected a printable `str` in field `{name}`")


def printable(text: str) -> str:
    """*text*, with anything unprintable escaped: safe for a log line or a reply."""
    return text if text.isprintable() else text.encode("unicode_escape").decode("ascii")


def decode(decoder: msgspec.msgpack.Decoder[T], data: bytes | memoryview, what: str,
           limit: int) -> T:
    """Decode *data* with *decoder*: ProtocolError, naming the field, for anything malformed."""
    if len(data) > limit:
        raise ProtocolError(f"{what} of {len(data)} bytes exceeds {limit}")
    try:
        return decoder.decode(data)
    except msgspec.ValidationError as exc:
        raise ProtocolError(f"malformed {what}: {printable(str(exc))}") from None
    except (msgspec.DecodeError, RecursionError) as exc:
        raise ProtocolError(f"{what} is not valid msgpack: {printable(str(exc))}") from None
