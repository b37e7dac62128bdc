"""framebus.wait(): which of several subscribers have a frame ready.

For a program that holds its Subscribers itself (or MultiSubscribers: anything with
fileno(), ready() and housekeeping) and wants to know which to read, as select() tells
which sockets to read. It asks each subscriber first, so a frame already there is found
without waiting; then it waits on their fileno() together, never longer than their
housekeeping interval before asking them again.
"""

from __future__ import annotations

import select
import time
from collections.abc import Iterable
from typing import Protocol, TypeVar


class Waitable(Protocol):
    """What wait() needs of a subscriber (Contract A)."""

    @property
    def housekeeping(self) -> float: ...

    def fileno(self) -> int: ...

    def ready(self) -> bool: ...


W = TypeVar("W", bound=Waitable)


def wait(subscribers: Iterable[W], timeout: float | None = None) -> list[W]:
    """The subscribers that have a frame ready, in the order given; waits up to *timeout*
    seconds (None: until one has) and returns [] if none has by then.

    A frame found ready is kept by its subscriber: its next recv() or try_recv() returns it.
    """
    subs = list({id(s): s for s in subscribers}.values())
    if not subs:
        raise ValueError("wait() needs at least one subscriber")
    deadline = None if timeout is None else time.monotonic() + timeout
    poller = select.poll()
    for sub in subs:
        poller.register(sub.fileno(), select.POLLIN)
    while True:
        ready = [s for s in subs if s.ready()]
        if ready:
            return ready
        now = time.monotonic()
        if deadline is not None and now >= deadline:
            return []
        wait_s = min(s.housekeeping for s in subs)
        if deadline is not None:
            wait_s = min(wait_s, deadline - now)
        poller.poll(max(1, int(wait_s * 1000 + 0.999)))
