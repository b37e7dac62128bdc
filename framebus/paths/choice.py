"""Which path a Subscriber takes to its stream, from what the broker says of it."""

from __future__ import annotations

from typing import NamedTuple

from .. import config
from ..errors import RingError
from ..protocol.broker import StreamInfo
from ..shm import RingReader
from ..shm.segment import pid_alive
from .base import PathKind, Transport


class Choice(NamedTuple):
    """The path to take (None: none reaches the stream), and why none does."""

    kind: PathKind | None
    unreachable: str | None = None


def choose(info: StreamInfo, transport: Transport, current: PathKind | None) -> Choice:
    """The path to stream *info* for a subscriber asking for *transport*, on *current* now.

    Shared memory when the ring is on this host (and, for "auto", is the broker's ring or
    soon will be), else the relay of the producer's host, if it has one.
    """
    if transport == "shm":
        if info.host != config.host_id():
            return Choice(None, f"its producer is on host {info.host}, this is "
                                f"{config.host_id()}: transport='shm' cannot reach it")
        return Choice("shm")
    local = info.host == config.host_id() and ring_may_be_here(info, current == "shm")
    if transport == "auto" and local:
        return Choice("shm")
    if info.relay:
        return Choice("tcp")
    return Choice(None, f"its producer is on host {info.host} and no relay serves it: "
                        "run `framebus relay` there")


def ring_may_be_here(info: StreamInfo, staying: bool) -> bool:
    """Whether the ring the broker describes is in this host's /dev/shm, or soon will be.

    A ring of the same name that another live producer writes (on a machine that shares
    this host's name, say) must never pass for this one: its token must be the broker's.
    But no ring, or a dead writer's, is a producer restarting here: a local subscriber waits
    for it rather than leave for the relay. And one already on shared memory stays, since a
    new generation's token reaches the broker a heartbeat after its descriptors.
    """
    try:
        ring = RingReader.open(info.segment)
    except RingError:
        return True
    try:
        return (staying or ring.token == info.token
                or not pid_alive(ring.header.writer_pid))
    finally:
        ring.close()
