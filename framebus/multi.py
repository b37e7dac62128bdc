"""MultiSubscriber: many streams in one consumer, with neither a thread per stream nor a
polling loop.

Every stream has a Subscriber of its own, which keeps its own mode (latest or all), its
drops and its way to the producer, and follows a producer that stops and comes back. One
epoll selector watches all their fileno(); a wait ends when one may have a frame, or when
the subscribers' housekeeping is due (their broker lookups), never sooner.

Fairness: the subscribers that woke wait in a queue. Each turn takes the first, asks it
for a frame (try_recv) and, if it gave one, puts it at the back, so a stream flat out
yields one frame per turn like any other; the selector is asked again (without waiting)
once per round of the queue, so a quiet stream that wakes joins it within a round.

Patterns ("lobby-*") pick up streams as they appear: the broker's list is asked for every
`discover_every` seconds, without waiting on the answer (framebus/listing.py).

A MultiSubscriber has Contract A's face itself (fileno, try_recv, ready, housekeeping), so
framebus.wait() and framebus.aio take it as they take a Subscriber.
"""

from __future__ import annotations

import collections
import logging
import selectors
import time
from collections.abc import Iterable, Iterator, Mapping
from types import MappingProxyType

import zmq

from .errors import FramebusError, Timeout
from .frame import Frame
from .listing import Listing, is_pattern
from .names import validate_stream_name
from .paths.base import Codec, Mode, Transport
from .subscriber import Subscriber
from .support.throttle import Throttle

log = logging.getLogger(__name__)

#: Seconds between two listings of the broker's streams, when patterns are given.
DISCOVER_EVERY = 0.5
#: Streams a MultiSubscriber takes at most, by default; more matches are logged, not
#: followed (each costs sockets and file descriptors).
MAX_STREAMS = 256
#: A selector wait never exceeds this (seconds), whatever the subscribers say.
_LONGEST_WAIT = 1.0


class MultiSubscriber:
    """Frames of many streams, one at a time, fairly.

    >>> with MultiSubscriber(["cam1", "cam2", "lobby-*"]) as subs:
    ...     frame = subs.recv(timeout=1.0)   # frame.stream says which
    ...     for frame in subs: ...

    Not thread-safe: one thread (or one event loop, through framebus.aio) uses it.
    """

    def __init__(self, names_or_patterns: str | Iterable[str], *, broker: str | None = None,
                 mode: Mode = "latest", queue: int = 1000, transport: Transport = "auto",
                 codec: Codec = "raw", quality: int = 90, context: zmq.Context | None = None,
                 discover_every: float = DISCOVER_EVERY, max_streams: int = MAX_STREAMS) -> None:
        wanted = [names_or_patterns] if isinstance(names_or_patterns, str) \
            else list(names_or_patterns)
        if not wanted:
            raise ValueError("MultiSubscriber needs at least one stream name or pattern")
        if not discover_every > 0:
            raise ValueError(f"discover_every must be > 0 seconds, not {discover_every!r}")
        patterns = [w for w in wanted if isinstance(w, str) and is_pattern(w)]
        names = [validate_stream_name(w) for w in wanted if w not in patterns]
        self._options = dict(broker=broker, mode=mode, queue=queue, transport=transport,
                             codec=codec, quality=quality)
        self.mode = mode
        self.max_streams = max_streams
        self._own_context = context is None
        self._context = zmq.Context() if context is None else context  # one I/O thread for all
        self._selector = selectors.EpollSelector()
        self._subs: dict[str, Subscriber] = {}
        self._ready: collections.deque[Subscriber] = collections.deque()
        self._queued: set[str] = set()
        self._round_left = 0  # turns left in this round of the ready queue
        self._held: Frame | None = None  # a frame ready() took, for the next recv
        self._next_housekeeping = 0.0
        self._now = time.monotonic()  # as of the last refresh
        self._asked: dict[str, float] = {}  # when each subscriber was last asked for a frame
        self._said_full = Throttle(log, 60.0)
        self._closed = False
        self._listing: Listing | None = None
        try:
            if patterns:
                self._listing = Listing(patterns, broker=broker, context=self._context,
                                        every=discover_every)
                self._selector.register(self._listing.fileno(), selectors.EVENT_READ, None)
            for name in dict.fromkeys(names):
                self._add(name)
        except BaseException:
            self.close()
            raise

    # -- what it follows -------------------------------------------------------------------

    @property
    def subscribers(self) -> Mapping[str, Subscriber]:
        """The stream's name to its Subscriber, for every stream followed (read-only)."""
        return MappingProxyType(self._subs)

    @property
    def patterns(self) -> list[str]:
        return [] if self._listing is None else list(self._listing.patterns)

    @property
    def received(self) -> int:
        return sum(s.received for s in self._subs.values())

    @property
    def dropped(self) -> int:
        return sum(s.dropped for s in self._subs.values())

    @property
    def housekeeping(self) -> float:
        """Seconds until try_recv() or ready() must be called again, with no wake-up: when a
        subscriber's housekeeping or the broker's list is due next."""
        return self._wait_for(time.monotonic(), None)

    def fileno(self) -> int:
        """Readable when a frame of some stream may be ready (the selector's epoll fd)."""
        return self._selector.fileno()

    def _add(self, name: str) -> None:
        if name in self._subs:
            return
        if len(self._subs) >= self.max_streams:
            self._said_full.warning("not following %s: already %d streams (max_streams)", name,
                                    len(self._subs))
            return
        sub = Subscriber(name, context=self._context, **self._options)  # type: ignore[arg-type]
        self._subs[name] = sub
        self._selector.register(sub.fileno(), selectors.EVENT_READ, sub)
        self._enqueue(sub)  # it may have a frame already
        log.info("following %s", name)

    # -- receiving -------------------------------------------------------------------------

    def recv(self, timeout: float | None = None) -> Frame:
        """The next frame of any stream; waits at most *timeout* seconds (None: forever).
        Raises framebus.Timeout when none comes in time."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            frame = self.try_recv()
            if frame is not None:
                return frame
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                raise Timeout(f"no frame of {sorted(self._subs) or self.patterns} within "
                              f"{timeout} s")
            self._refresh(self._wait_for(now, deadline))

    def try_recv(self) -> Frame | None:
        """The next frame of any stream if one is ready now, else None; never waits."""
        if self._held is not None:
            held, self._held = self._held, None
            return held
        if self._closed:
            raise ValueError("recv on a closed MultiSubscriber")
        refreshed = False
        while True:
            if self._round_left <= 0:
                if refreshed:  # a whole round gave nothing: wait (a wake-up comes by fileno)
                    return None
                self._refresh(0)
                refreshed = True
                if not self._ready:
                    return None
            sub = self._ready.popleft()
            self._round_left -= 1
            self._asked[sub.name] = self._now  # its housekeeping is done too
            frame = sub.try_recv()
            if frame is not None:
                self._ready.append(sub)  # it may have more: after the others
                return frame
            self._queued.discard(sub.name)  # drained: its fd tells when there is more

    def ready(self) -> bool:
        """Whether a frame is ready now (kept for the next recv/try_recv)."""
        if self._held is None:
            self._held = self.try_recv()
        return self._held is not None

    def __iter__(self) -> Iterator[Frame]:
        while not self._closed:
            yield self.recv()

    # -- waiting ----------------------------------------------------------------------------

    def _wait_for(self, now: float, deadline: float | None) -> float:
        """How long the next selector wait may last."""
        until = self._next_housekeeping
        if self._listing is not None:
            until = min(until, self._listing.due)
        if deadline is not None:
            until = min(until, deadline)
        return min(max(0.0, until - now), _LONGEST_WAIT)

    def _refresh(self, wait: float) -> None:
        """Wait up to *wait* seconds for a subscriber to wake; queue those that did, and every
        one when their housekeeping is due; take what the broker's list brought. Starts a new
        round of the queue."""
        for key, _ in self._selector.select(wait):
            if key.data is None:
                self._discover()
            else:
                self._enqueue(key.data)
        self._now = now = time.monotonic()
        if self._listing is not None and now >= self._listing.due:
            self._discover()
        if now >= self._next_housekeeping:
            self._housekeep(now)
        self._round_left = len(self._ready)

    def _housekeep(self, now: float) -> None:
        """Queue the subscribers not asked for a frame within their housekeeping interval (a
        stream that delivers is asked often enough by its own frames)."""
        soonest = _LONGEST_WAIT
        for name, sub in self._subs.items():
            every = sub.housekeeping
            left = self._asked.get(name, 0.0) + every - now
            if left <= 0:
                self._enqueue(sub)
                left = every
            soonest = min(soonest, left)
        self._next_housekeeping = now + soonest

    def _enqueue(self, sub: Subscriber) -> None:
        if sub.name not in self._queued:
            self._queued.add(sub.name)
            self._ready.append(sub)

    def _discover(self) -> None:
        assert self._listing is not None
        names = self._listing.poll()
        for name in names or ():
            if name not in self._subs:
                try:
                    self._add(name)
                except (FramebusError, zmq.ZMQError) as exc:  # tried again at the next list
                    self._said_full.warning("cannot follow %s: %s", name, exc, key=name)

    # -- lifetime ----------------------------------------------------------------------------

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._held = None
        self._selector.close()
        for sub in self._subs.values():
            sub.close()
        self._ready.clear()
        if self._listing is not None:
            self._listing.close()
        if self._own_context:
            self._context.term()

    def __enter__(self) -> MultiSubscriber:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"<MultiSubscriber streams={len(self._subs)} patterns={self.patterns} "
                f"received={self.received} dropped={self.dropped}>")
