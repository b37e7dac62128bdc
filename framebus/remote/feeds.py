"""The streams a relay reads: one feed thread per stream, started when a remote reader
wants the stream and stopped once nobody has wanted it for a while.

The relay keeps one pool for pixel streams (remote/feed.py) and one for packet streams
(remote/packet_feed.py); both kinds of feed are threads with an ``idle_since``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Generic, Protocol, TypeVar


class Feedlike(Protocol):
    #: When the feed's last reader went away (monotonic seconds); None while it is wanted.
    idle_since: float | None

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def join(self, timeout: float | None = None) -> None: ...

    def is_alive(self) -> bool: ...


F = TypeVar("F", bound=Feedlike)


class FeedPool(Generic[F]):
    """At most *most* feeds, made by *make(stream)*; *idle* seconds unwanted stops one."""

    def __init__(self, make: Callable[[str], F], *, most: int, idle: float) -> None:
        self._make, self.most, self._idle = make, most, idle
        self._feeds: dict[str, F] = {}

    def __contains__(self, stream: object) -> bool:
        return stream in self._feeds

    def __iter__(self) -> Iterator[F]:
        return iter(list(self._feeds.values()))

    def __len__(self) -> int:
        return len(self._feeds)

    def get(self, stream: str) -> F | None:
        """The feed reading *stream*, if one does."""
        return self._feeds.get(stream)

    def want(self, stream: str, wanted: set[str]) -> F | None:
        """The feed reading *stream*, started if need be (a dead one is started again);
        None if the pool is full of feeds of *wanted* streams."""
        feed = self._feeds.get(stream)
        if feed is None or not feed.is_alive():
            if feed is None and len(self._feeds) >= self.most and not self._drop_one(wanted):
                return None
            feed = self._feeds[stream] = self._make(stream)
            feed.start()
        feed.idle_since = None
        return feed

    def _drop_one(self, wanted: set[str]) -> bool:
        """Stop the feed unwanted (or dead) the longest, to make room."""
        now = time.monotonic()
        idle = [name for name, feed in self._feeds.items()
                if name not in wanted or not feed.is_alive()]
        if not idle:
            return False
        name = min(idle, key=lambda name: self._feeds[name].idle_since or now)
        self._feeds.pop(name).stop()
        return True

    def sweep(self, wanted: set[str], now: float) -> None:
        """Stop the feeds of streams not *wanted* for longer than the pool's idle time."""
        for name, feed in list(self._feeds.items()):
            if name in wanted:
                continue
            feed.idle_since = feed.idle_since or now
            if now - feed.idle_since > self._idle:
                feed.stop()
                del self._feeds[name]

    def close(self) -> None:
        """Stop every feed, then wait a little for each thread."""
        for feed in self._feeds.values():
            feed.stop()
        for feed in self._feeds.values():
            feed.join(2)
        self._feeds.clear()
