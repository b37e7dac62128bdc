"""What every path of a Subscriber is given, and what it must do."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol, get_args

import zmq

from .counts import Counts

if TYPE_CHECKING:
    from ..frame import Frame
    from ..protocol.broker import StreamInfo

Mode = Literal["latest", "all"]
Transport = Literal["auto", "shm", "tcp"]
#: Over the network: raw pixels, a JPEG of them, or the stream's own packets decoded here.
Codec = Literal["raw", "jpeg", "packets"]
CODECS: tuple[Codec, ...] = get_args(Codec)
PathKind = Literal["shm", "tcp"]


@dataclass(frozen=True)
class Request:
    """What the caller asked the Subscriber for."""

    name: str
    mode: Mode = "latest"
    #: Descriptors a mode="all" subscriber queues before the oldest are dropped.
    queue: int = 1000
    #: Over the network: the pixels raw, or as a JPEG of this quality, or packets decoded here.
    codec: Codec = "raw"
    quality: int = 90


@dataclass(frozen=True)
class PathContext:
    """Everything a path needs from the subscriber that owns it, given explicitly."""

    context: zmq.Context
    request: Request
    counts: Counts
    #: Called with a ring's token when the path meets a ring the broker did not name:
    #: a new producer or generation, proven by its ring. The subscriber then asks the broker
    #: again once the path's call has returned, never from inside it.
    on_new_ring: Callable[[bytes], None]


class Path(Protocol):
    """One way to the stream's frames. The Subscriber holds one at a time."""

    @property
    def kind(self) -> PathKind:
        """"shm" or "tcp"."""

    #: monotonic time of the last message that came in, accepted or not.
    last_message: float

    def update(self, info: StreamInfo) -> None:
        """The broker's latest word on the stream: follow it if it moved."""

    def receive(self, wait: float) -> Frame | None:
        """The next frame, waiting at most *wait* seconds (0: not at all); None if none came."""

    def fileno(self) -> int | None:
        """A descriptor that becomes readable when a message may have come (the Subscriber
        watches it for fileno()), or None. Like ZeroMQ's, it may signal only a change: the
        Subscriber reads until pending() is False before it waits on it again."""

    def pending(self) -> bool:
        """Whether a message waits to be read now (receive(0) would find it)."""

    def abandon(self) -> None:
        """The caller gave up waiting: drop what is outstanding."""

    def retire(self, token: bytes) -> None:
        """Frames of ring *token* are stale now: never return one."""

    def close(self) -> None:
        """Release the sockets. Frames already returned stay usable."""
