"""Subscriber: the consumer's side of a stream, on this host or another.

A Subscriber asks the broker where the stream is and takes one of two paths to it:

- **shared memory** (``transport="shm"``), when the producer runs on this host:
  descriptors over ZeroMQ, pixels mapped read-only from the ring, zero copies;
- **the network** (``transport="tcp"``), through the relay of the producer's
  host: each frame's pixels arrive in a message of their own
  (framebus/remote/receiver.py).

``transport="auto"`` (the default) takes shared memory when the stream's ring can
be mapped here and is the one the broker describes (the ring's random token must
match, so a segment of the same name on another host is never mistaken for it),
and the network otherwise. Either way the subscriber re-resolves by itself:
before the producer exists, after it restarts, after the broker comes back.

Two modes. ``"latest"`` (the default) always gets the freshest frame, and
``dropped`` counts what it missed. ``"all"`` (shared memory only) queues
descriptors and returns every frame in order, as long as the reader keeps within
the ring; any gap is reported in ``Frame.skipped`` and ``dropped``.
"""

from __future__ import annotations

import collections
import logging
import time
from collections.abc import Iterator

import zmq

from . import config
from .discovery import BrokerClient, StreamInfo
from .errors import BrokerUnavailable, ProtocolError, RingError, StreamNotFound, Timeout
from .frame import Frame
from .names import topic, validate_stream_name
from .protocol import relay as wire
from .protocol.descriptor import Descriptor
from .shm import RingReader
from .shm.segment import pid_alive

log = logging.getLogger(__name__)

MODES = ("latest", "all")
TRANSPORTS = ("auto", "shm", "tcp")
#: Ask the broker again when the stream has been silent this long (seconds).
RESOLVE_WHEN_SILENT = 1.0
#: Ask this often while no producer is known (seconds).
RESOLVE_UNCONNECTED = 0.1
#: Rejected messages are logged at most once in this many seconds (the rest are counted).
REJECTIONS_LOGGED = 10.0
_POLL_SLICE = 0.25


class Subscriber:
    """Receive frames of one stream.

    >>> with Subscriber("cam1") as sub:
    ...     frame = sub.recv(timeout=1.0)
    ...     frame.array          # read-only numpy view into shared memory
    """

    def __init__(self, name: str, *, broker: str | None = None, mode: str = "latest",
                 queue: int = 1000, transport: str = "auto", codec: str = "raw",
                 quality: int = 90) -> None:
        self.name = validate_stream_name(name)
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
        if transport not in TRANSPORTS:
            raise ValueError(f"transport must be one of {TRANSPORTS}, not {transport!r}")
        if transport == "tcp" and mode == "all":
            raise ValueError("mode='all' needs shared memory: over the network a subscriber "
                             "always gets the newest frame")
        if codec not in wire.CODECS:
            raise ValueError(f"codec must be one of {wire.CODECS}, not {codec!r}")
        if type(quality) is not int or not 1 <= quality <= 100:
            raise ValueError(f"quality must be an integer from 1 to 100, not {quality!r}")
        self.mode = mode
        self.transport = transport
        self.queue = queue
        self.want = wire.Want(name, codec, quality)
        self._context = zmq.Context()
        self._broker = BrokerClient(broker, context=self._context, timeout=0.5)
        self.info: StreamInfo | None = None
        self._path: ShmPath | None = None
        self._counts = Counts(name)
        self._last_message = time.monotonic()
        self._next_resolve = 0.0
        self._unreachable: str | None = None  # why no path reaches the stream, if none does
        self._said_all = False
        self._closed = False
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
    def path(self) -> str | None:
        """How frames reach this subscriber now: "shm", "tcp", or None before it knows."""
        return None if self._path is None else self._path.kind

    @property
    def connected(self) -> bool:
        """Whether the subscriber knows where the stream's frames come from."""
        return self._path is not None

    # -- receiving -------------------------------------------------------------

    def recv(self, timeout: float | None = None) -> Frame:
        """The next frame; waits at most *timeout* seconds (None: forever).

        Raises :class:`framebus.Timeout` when none arrives in time, and
        :class:`framebus.AccessDenied` when a relay refuses this client's key.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            now = time.monotonic()
            if self._path is not None:
                self._last_message = max(self._last_message, self._path.last_message)
            waiting = self._path is None or now - self._last_message > RESOLVE_WHEN_SILENT
            if now >= self._next_resolve and waiting:
                self._resolve(None if deadline is None else max(0.05, deadline - now))
                now = time.monotonic()
            wait = _POLL_SLICE if deadline is None else min(_POLL_SLICE, deadline - now)
            if wait > 0:
                frame = self._path.receive(wait) if self._path else _idle(wait)
                if frame is not None:
                    self._last_message = time.monotonic()
                    return frame
            if deadline is not None and time.monotonic() >= deadline:
                if self._path is not None:
                    self._path.abandon()
                why = f" ({self._unreachable})" if self._unreachable else ""
                raise Timeout(f"no frame of {self.name!r} within {timeout} s{why}")

    def __iter__(self) -> Iterator[Frame]:
        while not self._closed:
            yield self.recv()

    # -- discovery -------------------------------------------------------------

    def _resolve(self, timeout: float | None = None) -> None:
        """Ask the broker where the stream is; take or keep the path to it."""
        # Not connected yet: ask often, so no more than the first frames are missed.
        self._next_resolve = time.monotonic() + (0.5 if self._path else RESOLVE_UNCONNECTED)
        try:
            info = self._broker.lookup(self.name, timeout=min(timeout or 0.5, 0.5))
        except (StreamNotFound, BrokerUnavailable) as exc:
            log.debug("%s: not resolved yet: %s", self.name, exc)
            return
        if self.info is not None and info.token != self.info.token and self._path is not None:
            self._path.retire(self.info.token)  # a new producer or generation replaced it
        self.info, previous_reason = info, self._unreachable
        kind = self._choose(info)
        if self._unreachable and self._unreachable != previous_reason:
            log.warning("%s: %s", self.name, self._unreachable)
        if self._path is not None and self._path.kind != kind:
            log.info("%s: leaving %s for %s", self.name, self._path.kind, kind)
            self._path.close()
            self._path = None
        if kind is None:
            return
        try:
            if self._path is None:
                self._path = _PATHS[kind](self, info)
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
                self._path.close()
                self._path = None

    def _choose(self, info: StreamInfo) -> str | None:
        """Which path to take to the stream now, or None if none can reach it (and why)."""
        self._unreachable = None
        if self.transport == "shm":
            if info.host != config.host_id():
                self._unreachable = (f"its producer is on host {info.host}, this is "
                                     f"{config.host_id()}: transport='shm' cannot reach it")
                return None
            return "shm"
        staying = self._path is not None and self._path.kind == "shm"
        local = info.host == config.host_id() and _ring_may_be_here(info, staying)
        if self.transport == "auto" and local:
            return "shm"
        if info.relay:
            if self.mode == "all" and not self._said_all:
                self._said_all = True
                log.warning("%s: on host %s, reached over the network, where a subscriber "
                            "gets the newest frame, not all of them", self.name, info.host)
            return "tcp"
        self._unreachable = (f"its producer is on host {info.host} and no relay serves it: "
                             "run `framebus relay` there")
        return None

    # -- lifetime ----------------------------------------------------------------

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._path is not None:
            self._path.close()
            self._path = None
        self._broker.close()
        self._context.term()

    def __enter__(self) -> Subscriber:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"<Subscriber {self.name} mode={self.mode} path={self.path} "
                f"received={self.received} dropped={self.dropped}>")


class Counts:
    """A subscriber's frame accounting, shared by its paths: received, dropped, rejected."""

    def __init__(self, name: str = "") -> None:
        self._name = name
        self._quiet_until = 0.0
        self._unsaid = 0
        self.received = self.dropped = self.rejected = 0
        self._skipped = 0  # missed since the last frame returned
        self._last: tuple[bytes, int] | None = None  # (ring token, seq) of the last frame seen

    def seen(self, token: bytes, seq: int) -> None:
        """A frame of the stream came by: count the gap before it, in the same ring."""
        last, self._last = self._last, (token, seq)
        if last is not None and last[0] == token and seq > last[1] + 1:
            self.missed(seq - last[1] - 1)

    def is_new(self, token: bytes, seq: int) -> bool:
        """Whether frame *seq* of ring *token* is newer than every frame of it seen so far."""
        return self._last is None or self._last[0] != token or seq > self._last[1]

    def reject(self, what: str, why: Exception) -> None:
        """A message refused: counted, and logged, though at most once every REJECTIONS_LOGGED
        seconds with how many went unsaid, so that a flood of garbage is no flood of logs."""
        self.rejected += 1
        now = time.monotonic()
        if now < self._quiet_until:
            self._unsaid += 1
            return
        more = f" (and {self._unsaid} more since the last one logged)" if self._unsaid else ""
        log.warning("%s: rejected %s: %s%s", self._name, what, why, more)
        self._unsaid, self._quiet_until = 0, now + REJECTIONS_LOGGED

    def missed(self, n: int) -> None:
        self.dropped += n
        self._skipped += n

    def returned(self) -> int:
        """A frame is handed to the caller: how many it skipped."""
        skipped, self._skipped = self._skipped, 0
        self.received += 1
        return skipped


class ShmPath:
    """Frames of a stream on this host: descriptors over ZeroMQ, pixels mapped from the ring."""

    kind = "shm"

    def __init__(self, sub: Subscriber, info: StreamInfo) -> None:
        self._sub = sub
        self._topic = topic(sub.name)
        self._socket = sub._context.socket(zmq.SUB)
        self._socket.linger = 0
        if sub.mode == "latest":
            self._socket.conflate = True  # keep only the newest descriptor
        else:
            self._socket.rcvhwm = sub.queue
        self._socket.setsockopt(zmq.SUBSCRIBE, self._topic)
        self._endpoint: str | None = None
        self._ring: RingReader | None = None
        self._retired: collections.deque[bytes] = collections.deque(maxlen=16)
        self.last_message = 0.0
        try:
            self.update(info)
        except zmq.ZMQError:
            self._socket.close(linger=0)
            raise

    def update(self, info: StreamInfo) -> None:
        if info.endpoint != self._endpoint:
            # Connect first: an endpoint ZeroMQ refuses leaves the old connection alone.
            self._socket.connect(info.endpoint)
            if self._endpoint is not None:
                self._socket.disconnect(self._endpoint)
            log.info("%s: subscribed to %s", self._sub.name, info.endpoint)
            self._endpoint = info.endpoint

    def receive(self, wait: float) -> Frame | None:
        if not self._socket.poll(int(wait * 1000) or 1, zmq.POLLIN):
            return None
        return self._accept(self._socket.recv())

    def abandon(self) -> None:
        pass  # descriptors need no asking: nothing is outstanding

    def retire(self, token: bytes) -> None:
        """Frames of ring *token* are stale now: a descriptor of it still queued is dropped.

        Without this, the last descriptor of a producer that died would be returned,
        seconds late, after a new producer took over the stream.
        """
        self._retired.append(token)

    def _accept(self, message: bytes) -> Frame | None:
        """The frame a descriptor points at, if every field of it tells the truth.

        Anyone who can reach the descriptor socket can send anything on it, so a
        descriptor is believed only as far as the ring confirms it; a lie must cost one
        rejected message, never a wrong frame nor the accounting of the true ones.
        """
        self.last_message = time.monotonic()
        counts = self._sub._counts
        try:
            if not message.startswith(self._topic):
                raise ProtocolError("descriptor of another stream")
            desc = Descriptor.unpack(message[len(self._topic):])
            if desc.stream != self._sub.name:
                raise ProtocolError(f"descriptor of stream {desc.stream!r} under the topic "
                                    f"of {self._sub.name!r}")
            if desc.token in self._retired:
                return None
            ring = self._ring_for(desc)
            if ring is None:
                if desc.token not in self._known_tokens():
                    raise ProtocolError("descriptor of a ring that is not in shared memory")
                counts.missed(1)  # a ring we knew, replaced since the descriptor was sent
                return None
            _check_against_ring(desc, ring)
            if not counts.is_new(desc.token, desc.seq):
                raise ProtocolError(f"frame {desc.seq} again, or older than one already seen")
            record = ring.slot_info(desc.slot)
            if not ring.holds(desc.slot, desc.seq):  # then the record is that frame's
                counts.seen(desc.token, desc.seq)
                counts.missed(1)  # lapped before we could take it
                return None
            _check_against_slot(desc, record)
        except (ProtocolError, RingError) as exc:
            counts.reject("a descriptor", exc)
            return None
        counts.seen(desc.token, desc.seq)
        return Frame(desc, counts.returned(), ring=ring)

    def _ring_for(self, desc: Descriptor) -> RingReader | None:
        """The mapped ring that *desc* points into, mapping it if it is new.

        The ring itself says whether the token is real: a made-up one costs a look at
        /dev/shm, never a question to the broker.
        """
        if self._ring is not None and self._ring.token == desc.token:
            return self._ring
        sub = self._sub
        segment = sub.info.segment if sub.info else config.segment_name(sub.name)
        try:
            ring = RingReader.open(segment)
        except RingError:
            return None  # replaced or removed since the descriptor was sent
        if ring.token != desc.token:
            ring.close()
            return None
        if sub.info is None or sub.info.token != desc.token:
            sub._resolve()  # a new producer or generation, proven by its ring: learn of it
        if self._ring is not None:
            log.info("%s: new ring (generation %d, %s)", sub.name, ring.generation,
                     ring.geometry.shape)
        # The old ring is not closed: frames still held keep it mapped until they go.
        self._ring = ring
        return ring

    def _known_tokens(self) -> set[bytes]:
        """Rings of the stream that really existed: the broker's, and the one mapped."""
        return {t.token for t in (self._sub.info, self._ring) if t is not None}

    def close(self) -> None:
        self._socket.close(linger=0)
        self._ring = None  # unmapped once the frames the caller still holds are gone


def _check_against_ring(desc: Descriptor, ring: RingReader) -> None:
    g = ring.geometry
    if (desc.slot >= ring.slot_count or desc.slot != ring.slot_of(desc.seq)
            or desc.shape != g.shape or desc.dtype != g.dtype.str or desc.fmt != g.fmt
            or desc.generation != ring.generation):
        raise ProtocolError(f"descriptor of frame {desc.seq} does not match its ring")
    # A producer publishes a frame after committing it: one beyond the head is made up.
    if desc.seq > ring.head:
        raise ProtocolError(f"descriptor of frame {desc.seq}, but the ring's newest is "
                            f"{ring.head}")


def _check_against_slot(desc: Descriptor, record: tuple[int, int, int]) -> None:
    """The writer's own record of the frame in its slot, (seq, pts, timestamp_ns), must be
    the descriptor's: a made-up pts or timestamp of a real frame is refused too."""
    if record != (desc.seq, 0 if desc.pts is None else desc.pts, desc.timestamp_ns):
        raise ProtocolError(f"descriptor of frame {desc.seq} does not match its slot's "
                            "pts and timestamp")


def _ring_may_be_here(info: StreamInfo, staying: bool) -> bool:
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


def _idle(wait: float) -> None:
    time.sleep(wait)
    return None


def _remote_path(sub: Subscriber, info: StreamInfo):
    from .remote.receiver import RemotePath

    return RemotePath(sub, info)


_PATHS = {"shm": ShmPath, "tcp": _remote_path}
