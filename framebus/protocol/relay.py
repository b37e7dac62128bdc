"""The messages between a relay and its remote subscribers. Documented in docs/protocol.md.

A subscriber's DEALER sends one-part msgpack requests; each ``want`` is one credit::

    {"v": 1, "op": "want", "stream": "cam1", "codec": "raw" | "jpeg", "quality": 1..100,
     "token": <16 bytes> | nil, "after": <seq> | -1}

"Send me the newest frame of cam1 that I do not have": newer than ``after`` in the
ring ``token``, or any frame of another ring (a restarted producer). ``{"v": 1,
"op": "bye"}`` says the subscriber is leaving.

The relay answers a credit with one frame, when there is one::

    [b"frame", <descriptor>, <codec: b"raw" | b"jpeg">, <payload>]

where the descriptor is the producer's own (framebus/descriptor.py) and the
payload the pixels (raw, exactly the descriptor's shape and dtype) or a JPEG of
them. A request it cannot serve is answered ``[b"error", msgpack {"code", "error"}]``.
"""

from __future__ import annotations

from dataclasses import dataclass

import msgpack

from ..errors import ProtocolError
from ..names import is_valid_stream_name

VERSION = 1
CODECS = ("raw", "jpeg")
MAX_REQUEST = 512
FRAME, ERROR = b"frame", b"error"


@dataclass(frozen=True)
class Want:
    stream: str
    codec: str = "raw"
    quality: int = 90
    token: bytes | None = None
    after: int = -1

    def pack(self) -> bytes:
        return msgpack.packb({"v": VERSION, "op": "want", "stream": self.stream,
                              "codec": self.codec, "quality": self.quality,
                              "token": self.token, "after": self.after})

    @property
    def setting(self) -> tuple[str, int]:
        """What the payload is made with: frames are encoded once per setting."""
        return (self.codec, self.quality if self.codec == "jpeg" else 0)


BYE = msgpack.packb({"v": VERSION, "op": "bye"})


def parse_request(data: bytes) -> Want | None:
    """A request: a Want, or None for bye. ProtocolError, with the reason, for anything else."""
    if len(data) > MAX_REQUEST:
        raise ProtocolError(f"request of {len(data)} bytes exceeds {MAX_REQUEST}")
    try:
        m = msgpack.unpackb(data, raw=False, max_str_len=128, max_bin_len=32,
                            max_array_len=8, max_map_len=16)
    except Exception as exc:  # msgpack raises many types on garbage
        raise ProtocolError(f"request is not valid msgpack: {type(exc).__name__}") from None
    # type(): True and 1.0 compare equal to 1, and are no version.
    if not isinstance(m, dict) or type(m.get("v")) is not int or m["v"] != VERSION:
        raise ProtocolError(f"request must be a map with v={VERSION}")
    op = m.get("op")
    if op == "bye":
        return None
    if op != "want":
        raise ProtocolError(f"unknown op {op!r}")
    stream, codec, quality = m.get("stream"), m.get("codec"), m.get("quality")
    token, after = m.get("token"), m.get("after")
    if not is_valid_stream_name(stream):
        raise ProtocolError(f"invalid stream name {stream!r}")
    if codec not in CODECS:
        raise ProtocolError(f"codec must be one of {CODECS}, not {codec!r}")
    if type(quality) is not int or not 1 <= quality <= 100:
        raise ProtocolError("quality must be an integer from 1 to 100")
    if token is not None and (not isinstance(token, bytes) or len(token) != 16):
        raise ProtocolError("token must be 16 bytes or nil")
    if type(after) is not int or not -1 <= after < 2**62:
        raise ProtocolError("after must be a sequence number or -1")
    return Want(stream, codec, quality, token, after)


def error_reply(code: str, message: str) -> list[bytes]:
    return [ERROR, msgpack.packb({"code": code, "error": message})]


def parse_error(data: bytes) -> tuple[str, str]:
    try:
        m = msgpack.unpackb(data, raw=False, max_str_len=1024, max_map_len=4)
        return str(m["code"]), str(m["error"])
    except Exception:
        raise ProtocolError("malformed error reply from the relay") from None
