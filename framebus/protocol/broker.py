"""The broker's messages: requests, replies and StreamInfo. Documented in docs/protocol.md."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from ..errors import ProtocolError

MAX_MESSAGE = 64 * 1024


@dataclass
class StreamInfo:
    """What the broker knows about a stream."""

    name: str
    host: str
    pid: int
    segment: str
    endpoint: str
    token: bytes
    generation: int
    shape: tuple[int, ...]
    dtype: str
    fmt: str
    slots: int
    alive: bool = True
    #: Producer figures from its last heartbeat.
    frames: int = 0
    fps: float = 0.0
    #: Seconds since the producer's last frame, or None before the first.
    age: float | None = None
    #: Subscribers connected to the producer's descriptors.
    subscribers: int = 0
    #: The producer's own figures, e.g. a decoder's decode_fps, dropped, decode_errors,
    #: reconnects.
    figures: dict = field(default_factory=dict)
    #: The relay serving the stream's host to other hosts, if one runs there.
    relay: str | None = None

    def to_wire(self) -> dict:
        d = asdict(self)
        d["shape"] = list(self.shape)
        return d

    @classmethod
    def from_wire(cls, d: object) -> StreamInfo:
        if not isinstance(d, dict):
            raise ProtocolError("stream info is not a map")
        try:
            info = cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})
        except TypeError as exc:
            raise ProtocolError(f"incomplete stream info: {exc}") from None
        info.shape = tuple(info.shape)
        return info
