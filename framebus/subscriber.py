"""Subscriber: the consumer's side of a stream.

A Subscriber asks the broker where the stream's descriptors are published,
subscribes to them, and maps the stream's ring read-only. It re-resolves by
itself: before the producer exists, after the producer restarts, and after
the broker comes back.

Two modes. ``"latest"`` (the default) keeps only the newest descriptor, so a
slow reader always gets the freshest frame and ``dropped`` counts what it
missed. ``"all"`` queues descriptors and returns every frame in order, as
long as the reader keeps within the ring; any gap is reported in
``Frame.skipped`` and ``dropped``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

import zmq

from . import config
from .descriptor import Descriptor
from .discovery import BrokerClient, StreamInfo
from .errors import BrokerUnavailable, ProtocolError, RingError, StreamNotFound, Timeout
from .frame import Frame
from .names import topic, validate_stream_name
from .shm import RingReader

log = logging.getLogger(__name__)

MODES = ("latest", "all")
#: Ask the broker again when the stream has been silent this long (seconds).
RESOLVE_WHEN_SILENT = 1.0
_POLL_SLICE = 0.25


class Subscriber:
    """Receive frames of one stream.

    >>> with Subscriber("cam1") as sub:
    ...     frame = sub.recv(timeout=1.0)
    ...     frame.array          # read-only numpy view into shared memory
    """

    def __init__(self, name: str, *, broker: str | None = None, mode: str = "latest",
                 queue: int = 1000) -> None:
        self.name = validate_stream_name(name)
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
        self.mode = mode
        self._topic = topic(name)
        self._context = zmq.Context()
        self._socket = self._context.socket(zmq.SUB)
        self._socket.linger = 0
        if mode == "latest":
            self._socket.conflate = True  # keep only the newest descriptor
        else:
            self._socket.rcvhwm = queue
        self._socket.setsockopt(zmq.SUBSCRIBE, self._topic)
        self._broker = BrokerClient(broker, context=self._context, timeout=0.5)
        self.info: StreamInfo | None = None
        self._endpoint: str | None = None
        self._ring: RingReader | None = None
        self._asked_about: bytes | None = None
        self._last_seq: int | None = None
        self._skipped = 0  # missed since the last frame returned
        self._last_message = time.monotonic()
        self._next_resolve = 0.0
        #: Frames published but never returned by recv(): skipped for being
        #: slow, or overwritten before they could be mapped.
        self.dropped = 0
        #: Frames returned by recv().
        self.received = 0
        #: Descriptors refused as malformed or inconsistent with the ring.
        self.rejected = 0
        self._closed = False
        self._resolve()

    # -- receiving -------------------------------------------------------------

    def recv(self, timeout: float | None = None) -> Frame:
        """The next frame; waits at most *timeout* seconds (None: forever).

        Raises :class:`framebus.Timeout` when none arrives in time.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            now = time.monotonic()
            if now >= self._next_resolve and now - self._last_message > RESOLVE_WHEN_SILENT:
                self._resolve(None if deadline is None else max(0.05, deadline - now))
                now = time.monotonic()
            wait = _POLL_SLICE if deadline is None else min(_POLL_SLICE, deadline - now)
            if wait > 0 and self._socket.poll(int(wait * 1000) or 1, zmq.POLLIN):
                frame = self._accept(self._socket.recv())
                if frame is not None:
                    return frame
            elif deadline is not None and time.monotonic() >= deadline:
                raise Timeout(f"no frame of {self.name!r} within {timeout} s")

    def __iter__(self) -> Iterator[Frame]:
        while not self._closed:
            yield self.recv()

    def _accept(self, message: bytes) -> Frame | None:
        self._last_message = time.monotonic()
        try:
            if not message.startswith(self._topic):
                raise ProtocolError("descriptor of another stream")
            desc = Descriptor.unpack(message[len(self._topic):])
            ring = self._ring_for(desc)
            if ring is None:
                self._count_missed(1)  # its ring is already gone
                return None
            _check_against_ring(desc, ring)
        except (ProtocolError, RingError) as exc:
            self.rejected += 1
            log.warning("%s: rejected a descriptor: %s", self.name, exc)
            return None
        self._count_gap_before(desc.seq)
        if not ring.holds(desc.slot, desc.seq):
            self._count_missed(1)  # lapped before we could take it
            return None
        skipped, self._skipped = self._skipped, 0
        self.received += 1
        return Frame(desc, skipped, ring=ring)

    def _count_gap_before(self, seq: int) -> None:
        last, self._last_seq = self._last_seq, seq
        if last is not None and seq > last + 1:  # else: in order, first, or a restarted producer
            self._count_missed(seq - last - 1)

    def _count_missed(self, n: int) -> None:
        self.dropped += n
        self._skipped += n

    def _ring_for(self, desc: Descriptor) -> RingReader | None:
        """The mapped ring that *desc* points into, mapping it if it is new."""
        if self._ring is not None and self._ring.token == desc.token:
            return self._ring
        if (self.info is None or self.info.token != desc.token) and self._asked_about != desc.token:
            self._asked_about = desc.token  # once per ring, however the broker answers
            self._resolve()  # a new producer or generation: refresh what we know of it
        segment = self.info.segment if self.info else config.segment_name(self.name)
        try:
            ring = RingReader.open(segment)
        except RingError:
            return None  # replaced or removed since the descriptor was sent
        if ring.token != desc.token:
            ring.close()
            return None
        if self._ring is not None:
            log.info("%s: new ring (generation %d, %s)", self.name, ring.generation,
                     ring.geometry.shape)
        # The old ring is not closed: frames still held keep it mapped until they go.
        self._ring = ring
        return ring

    # -- discovery -------------------------------------------------------------

    def _resolve(self, timeout: float | None = None) -> None:
        """Ask the broker where the stream is; (re)connect if that changed."""
        self._next_resolve = time.monotonic() + 0.5
        try:
            info = self._broker.lookup(self.name, timeout=min(timeout or 0.5, 0.5))
        except (StreamNotFound, BrokerUnavailable) as exc:
            log.debug("%s: not resolved yet: %s", self.name, exc)
            return
        self.info = info
        if info.endpoint != self._endpoint:
            if self._endpoint is not None:
                self._socket.disconnect(self._endpoint)
            self._socket.connect(info.endpoint)
            log.info("%s: subscribed to %s", self.name, info.endpoint)
            self._endpoint = info.endpoint

    @property
    def connected(self) -> bool:
        """Whether the subscriber knows where the stream's descriptors come from."""
        return self._endpoint is not None

    # -- lifetime ----------------------------------------------------------------

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._broker.close()
        self._socket.close(linger=0)
        self._context.term()
        self._ring = None  # unmapped once the frames the caller still holds are gone

    def __enter__(self) -> Subscriber:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"<Subscriber {self.name} mode={self.mode} received={self.received} "
                f"dropped={self.dropped}>")


def _check_against_ring(desc: Descriptor, ring: RingReader) -> None:
    g = ring.geometry
    if (desc.slot >= ring.slot_count or desc.slot != ring.slot_of(desc.seq)
            or desc.shape != g.shape or desc.dtype != g.dtype.str):
        raise ProtocolError(f"descriptor of frame {desc.seq} does not match its ring")
