"""Subscriber: the consumer's side of a stream, on this host or another.

A Subscriber asks the broker where the stream is and takes one of two paths to it:

- **shared memory** (``transport="shm"``), when the producer runs on this host:
  descriptors over ZeroMQ, pixels mapped read-only from the ring, zero copies;
- **the network** (``transport="tcp"``), through the relay of the producer's
  host: each frame's pixels arrive in a message of their own.

Each path is a module of framebus/paths/ behind one interface (paths/base.py).

``transport="auto"`` (the default) takes shared memory when the stream's ring can
be mapped here and is the one the broker describes (the ring's random token must
match, so a segment of the same name on another host is never mistaken for it),
and the network otherwise. Either way the subscriber re-resolves by itself:
before the producer exists, after it restarts, after the broker comes back.

To wait on it beside other work: ``fileno()`` is readable when a frame may be ready; then
call ``try_recv()`` (never waits) until it returns None, and wait again for at most
``housekeeping`` seconds. Wake-ups may be spurious, never lost. ``ready()`` peeks.

Two modes. ``"latest"`` (the default) always gets the freshest frame, and
``dropped`` counts what it missed. ``"all"`` (shared memory only) queues
descriptors and returns every frame in order, as long as the reader keeps within
the ring; any gap is reported in ``Frame.skipped`` and ``dropped``.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Iterator

import zmq

from . import config
from .discovery import BrokerClient
from .errors import BrokerRefused, BrokerUnavailable, StreamNotFound, Timeout
from .frame import Frame
from .names import validate_stream_name
from .paths import Counts, Path, PathContext, Request
from .paths.base import CODECS, Codec, Mode, PathKind, Transport
from .paths.choice import choose
from .paths.shm import ShmPath
from .paths.tcp import remote_path
from .paths.watch import PathWatch
from .protocol.broker import StreamInfo
from .shm.segment import SHM_DIR
from .support.backoff import Backoff
from .support.throttle import Throttle

log = logging.getLogger(__name__)

MODES: tuple[Mode, ...] = ("latest", "all")
TRANSPORTS: tuple[Transport, ...] = ("auto", "shm", "tcp")
#: Ask the broker again when the stream has been silent this long (seconds).
RESOLVE_WHEN_SILENT = 1.0
#: Ask this often while no producer is known (seconds)...
RESOLVE_UNCONNECTED = 0.1
#: ... at first: each refusal (no such stream yet) doubles the pause, up to this, and an
#: answer starts it over. A stream that comes up is found within it.
RESOLVE_REFUSED_CAP = 0.5
#: Refusals other than not_found ("internal": a broker's bug) are logged at most this often.
REFUSALS_LOGGED = 10.0
#: While it has no path, the subscriber looks this often for the stream's ring on this host: a
#: producer here that comes up is asked about at once, however long the pause (seconds).
RING_LOOK_EVERY = 0.05
_POLL_SLICE = 0.25
#: A broker lookup made from try_recv()/ready() waits at most this long for the answer (a
#: local broker answers in well under a millisecond; one that is away costs this, at most
#: once per RESOLVE_UNCONNECTED).
LOOKUP_WITHOUT_WAITING = 0.02
#: try_recv() refuses at most this many messages in one call (a flood of garbage) before it
#: returns None; the rest are read at the next call.
REFUSED_PER_CALL = 1000


class Subscriber:
    """Receive frames of one stream.

    >>> with Subscriber("cam1") as sub:
    ...     frame = sub.recv(timeout=1.0)
    ...     frame.array          # read-only numpy view into shared memory
    """

    def __init__(self, name: str, *, broker: str | None = None, mode: Mode = "latest",
                 queue: int = 1000, transport: Transport = "auto", codec: Codec = "raw",
                 quality: int = 90, context: zmq.Context | None = None) -> None:
        self.name = validate_stream_name(name)
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
        if transport not in TRANSPORTS:
            raise ValueError(f"transport must be one of {TRANSPORTS}, not {transport!r}")
        if transport == "tcp" and mode == "all":
            raise ValueError("mode='all' needs shared memory: over the network a subscriber "
                             "always gets the newest frame")
        if codec not in CODECS:
            raise ValueError(f"codec must be one of {CODECS}, not {codec!r}")
        if type(quality) is not int or not 1 <= quality <= 100:
            raise ValueError(f"quality must be an integer from 1 to 100, not {quality!r}")
        self.mode = mode
        self.transport = transport
        self.queue = queue
        #: pyzmq's own rule: a context given is the caller's to end, one made here is ours.
        self._own_context = context is None
        self._context = zmq.Context() if context is None else context
        self._counts = Counts(name)
        self._ctx = PathContext(self._context, Request(name, mode, queue, codec, quality),
                                self._counts, self._on_new_ring)
        self._broker = BrokerClient(broker, context=self._context, timeout=0.5)
        self._refusals = Backoff(RESOLVE_UNCONNECTED, RESOLVE_REFUSED_CAP, math.inf)
        self._said_refused = Throttle(log, REFUSALS_LOGGED)
        self._ring_file = SHM_DIR + config.segment_name(name)
        self._ring_seen: int | None = None  # the inode of the ring seen there, if one is
        #: What the broker last said of the stream.
        self.info: StreamInfo | None = None
        self._path: Path | None = None
        self._last_message = time.monotonic()
        self._next_resolve = 0.0
        self._resolve_now = False  # a path saw a new ring: ask the broker before waiting
        self._unreachable: str | None = None  # why no path reaches the stream, if none does
        self._said_all = False
        self._closed = False
        self._watch = PathWatch()  # fileno(): watches whichever path is current
        self._held: Frame | None = None  # the frame ready() found, returned next
        self._resolved_at: float | None = None  # set when _housekeep asked the broker
        self._resolve()

    # -- figures ---------------------------------------------------------------

    @property
    def received(self) -> int:
        """Frames returned by recv()."""
        return self._counts.received

    @property
    def dropped(self) -> int:
        """Frames published but never returned: skipped for being slow, or lapped."""
        return self._counts.dropped

    @property
    def rejected(self) -> int:
        """Messages refused as malformed or inconsistent with the ring."""
        return self._counts.rejected

    @property
    def path(self) -> PathKind | None:
        """How frames reach this subscriber now: "shm", "tcp", or None before it knows."""
        return None if self._path is None else self._path.kind

    @property
    def connected(self) -> bool:
        """Whether the subscriber knows where the stream's frames come from."""
        return self._path is not None

    # -- receiving -------------------------------------------------------------

    def recv(self, timeout: float | None = None) -> Frame:
        """The next frame; waits at most *timeout* seconds (None: forever).

        Raises :class:`framebus.Timeout` when none arrives in time, and AccessDenied when
        a relay refuses this client's key or the ring is not shared with this user.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            now = time.monotonic()
            self._housekeep(None if deadline is None else max(0.05, deadline - now), now)
            if (frame := self._take_held()) is not None:
                return frame
            if self._resolved_at is not None:
                now = time.monotonic()  # the lookup took its time
            wait = _POLL_SLICE if deadline is None else min(_POLL_SLICE, deadline - now)
            if wait > 0:
                frame = self._receive(wait, 0.5)
                if frame is not None:
                    return frame
            if deadline is not None and time.monotonic() >= deadline:
                if self._path is not None:
                    self._path.abandon()
                why = f" ({self._unreachable})" if self._unreachable else ""
                raise Timeout(f"no frame of {self.name!r} within {timeout} s{why}")

    def try_recv(self) -> Frame | None:
        """The next frame if one is ready now, else None; never waits for a frame.

        It does the subscriber's housekeeping too (looking the stream up, following it to a
        new producer), so a caller waiting on fileno() calls it at least every
        ``housekeeping`` seconds. A lookup waits at most LOOKUP_WITHOUT_WAITING for the broker.
        """
        if self._closed:
            return None
        self._housekeep(LOOKUP_WITHOUT_WAITING, time.monotonic())
        return self._take_held() if self._held is not None else self._take_now()

    def ready(self) -> bool:
        """Whether a frame is ready now. It is kept: the next recv() or try_recv() returns
        it. In mode "latest" a newer frame that came meanwhile replaces it, and the one
        replaced counts as dropped."""
        if self._closed:
            return False
        if self._held is None or self.mode == "latest":
            self._housekeep(LOOKUP_WITHOUT_WAITING, time.monotonic())
            newer = self._take_now()
            if newer is not None:
                if self._held is not None:
                    self._counts.replaced(self._held, newer)
                self._held = newer
        return self._held is not None

    def fileno(self) -> int:
        """A file descriptor, the same for the subscriber's life, that is readable when a
        frame may be ready. Wake-ups may be spurious, never lost: once it is readable, call
        try_recv() until it returns None before waiting on it again."""
        return self._watch.fileno()

    @property
    def housekeeping(self) -> float:
        """Seconds: whoever waits on fileno() calls try_recv() or ready() at least this
        often, wake-up or not, so that the subscriber can find and follow its stream."""
        return RING_LOOK_EVERY if self._path is None else _POLL_SLICE

    def _housekeep(self, lookup: float | None, now: float) -> None:
        """Ask the broker if it is time to: nothing known yet, a silence, or a new ring."""
        self._resolved_at = None
        if not self._resolve_now and now < self._next_resolve:
            return
        if self._path is not None:
            self._last_message = max(self._last_message, self._path.last_message)
        waiting = self._path is None or now - self._last_message > RESOLVE_WHEN_SILENT
        if self._resolve_now or waiting:
            self._resolve(lookup)
            self._resolved_at = now

    def _take_held(self) -> Frame | None:
        """The frame ready() kept, if any (in mode "latest", or a newer one)."""
        if self._held is not None and self.mode == "latest":
            self.ready()
        frame, self._held = self._held, None
        return frame

    def _take_now(self) -> Frame | None:
        """A frame there now. None only once nothing is pending (or REFUSED_PER_CALL were
        refused): ZeroMQ's descriptor signals only new messages, not the ones left."""
        for _ in range(REFUSED_PER_CALL):
            frame = self._receive(0.0, LOOKUP_WITHOUT_WAITING)
            if frame is not None or self._path is None or not self._path.pending():
                return frame
        return None

    def _receive(self, wait: float, lookup: float) -> Frame | None:
        """One frame from the path within *wait* seconds (0: what is there now)."""
        frame = self._path.receive(wait) if self._path else self._idle(wait)
        if self._resolve_now:
            self._resolve(lookup)  # a new ring: learn of it before its first frame goes
        return frame  # the path keeps its last_message: _housekeep reads it when it matters

    def __iter__(self) -> Iterator[Frame]:
        while not self._closed:
            yield self.recv()

    # -- discovery -------------------------------------------------------------

    def _resolve(self, timeout: float | None = None) -> None:
        """Ask the broker where the stream is; take or keep the path to it, and watch the
        path's descriptor from fileno()."""
        try:
            self._lookup(timeout)
        finally:
            if not self._closed:
                self._watch.watch(self._path)

    def _lookup(self, timeout: float | None) -> None:
        self._resolve_now = False
        # Not connected yet: ask often, so no more than the first frames are missed.
        self._next_resolve = time.monotonic() + (0.5 if self._path else RESOLVE_UNCONNECTED)
        try:
            info = self._broker.lookup(self.name, timeout=min(timeout or 0.5, 0.5))
        except BrokerUnavailable as exc:  # the timeout it took paces the next try
            log.debug("%s: not resolved yet: %s", self.name, exc)
            return
        except (StreamNotFound, BrokerRefused) as exc:
            self._pause()
            if isinstance(exc, StreamNotFound):
                log.debug("%s: not resolved yet: %s", self.name, exc)
            else:
                self._said_refused.warning("%s: the broker refused a lookup: %s", self.name, exc,
                                           key=type(exc).__name__)
            return
        if self.info is not None and info.token != self.info.token and self._path is not None:
            self._path.retire(self.info.token)  # a new producer or generation replaced it
        self.info, previous_reason = info, self._unreachable
        kind = self._choose(info)
        if self._unreachable and self._unreachable != previous_reason:
            log.warning("%s: %s", self.name, self._unreachable)
        if self._path is not None and self._path.kind != kind:
            log.info("%s: leaving %s for %s", self.name, self._path.kind, kind)
            self._watch.unwatch()
            self._path.close()
            self._path = None
        if kind is None:
            self._pause()
            return
        try:
            if self._path is None:
                self._path = self._open_path(kind, info)
            else:
                self._path.update(info)
        except zmq.ZMQError as exc:
            # Whoever registered the stream gave an endpoint ZeroMQ refuses: say so, and
            # ask again later rather than raise something that is not a FramebusError.
            where = "its relay" if kind == "tcp" else "its descriptor socket"
            self._unreachable = f"cannot connect to {where}: {exc}"
            if self._unreachable != previous_reason:
                log.warning("%s: %s", self.name, self._unreachable)
            if self._path is not None:
                self._watch.unwatch()
                self._path.close()
                self._path = None
            self._pause()
            return
        self._refusals.reset()  # a way to the stream: the next refusal starts the pauses over

    def _pause(self) -> None:
        """The broker's answer gave no way to the stream: asked again at once, it would give
        the same. The next lookup waits a pause that doubles with each such answer, from
        RESOLVE_UNCONNECTED up to RESOLVE_REFUSED_CAP."""
        self._next_resolve = max(self._next_resolve, time.monotonic() + self._refusals.next())

    def _idle(self, wait: float) -> Frame | None:
        """Wait *wait* seconds with no path (no frame comes), or until the next lookup is due;
        a new ring of the stream on this host ends the wait and the pause between lookups at
        once: its producer registers now."""
        deadline = min(time.monotonic() + wait, self._next_resolve)
        while not self._resolve_now:
            ring = _file_id(self._ring_file)
            if ring is not None and ring != self._ring_seen:
                self._refusals.reset()
                self._resolve_now = True
            self._ring_seen = ring
            left = deadline - time.monotonic()
            if left <= 0:
                break
            time.sleep(min(left, RING_LOOK_EVERY))
        return None

    def _open_path(self, kind: PathKind, info: StreamInfo) -> Path:
        if kind == "shm":
            return ShmPath(self._ctx, info)
        return remote_path(self._ctx, info)

    def _on_new_ring(self, token: bytes) -> None:
        """A path met a ring the broker has not told of: ask the broker at the next chance."""
        log.debug("%s: ring %s is not the broker's; asking it again", self.name, token.hex())
        self._resolve_now = True

    def _choose(self, info: StreamInfo) -> PathKind | None:
        """Which path to take to the stream now, or None if none can reach it (and why)."""
        kind, self._unreachable = choose(info, self.transport, self.path)
        if kind == "tcp" and self.mode == "all" and not self._said_all:
            self._said_all = True
            log.warning("%s: on host %s, reached over the network, where a subscriber "
                        "gets the newest frame, not all of them", self.name, info.host)
        return kind

    # -- lifetime ----------------------------------------------------------------

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._held = None
        self._watch.close()  # before the path's socket goes: its number may be reused
        if self._path is not None:
            self._path.close()
            self._path = None
        self._broker.close()
        if self._own_context:
            self._context.term()

    def __enter__(self) -> Subscriber:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"<Subscriber {self.name} mode={self.mode} path={self.path} "
                f"received={self.received} dropped={self.dropped}>")


def _file_id(path: str) -> int | None:
    """Which file is at *path*, by its inode (a new ring is a new file), or None if none is.
    Not its times: a ring written to may change them, and that is no new producer."""
    try:
        return os.stat(path).st_ino
    except OSError:
        return None
