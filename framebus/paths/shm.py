"""The shared-memory path: a stream whose producer is on this host.

Descriptors arrive over ZeroMQ from the producer's PUB socket; the pixels are mapped
read-only from its ring, so a frame costs no copy, whatever its size.

In mode "all" a ring's history comes first: the frames older than its first descriptor
that the ring still holds, read from the slot table. A PUB socket sends nothing to a
subscriber until its connection is complete (ZeroMQ's slow joiner), so without them a
subscriber started with its producer, or following one that restarted, would lose the
first frames.
"""

from __future__ import annotations

import collections
import logging
import select
import time
from dataclasses import dataclass
from typing import ClassVar, Literal

import msgspec
import zmq

from ..errors import ProtocolError, RingError, RingNotReadable
from ..frame import Frame
from ..names import topic
from ..protocol.broker import StreamInfo
from ..protocol.descriptor import Descriptor
from ..shm import RingReader
from ..shm.segment import check_readable, pid_alive
from ..shm.wake import WakeChannel
from .base import PathContext
from .checks import check_against_ring, check_against_slot
from .woken import Woken, older_descriptor

log = logging.getLogger("framebus.subscriber")

#: A writer that offers no wake-up (an older framebus, another language's producer), or
#: refused one, is asked again after this long (seconds); descriptors serve meanwhile.
WAKE_RETRY = 1.0


class ShmPath:
    """Frames of a stream on this host: descriptors over ZeroMQ, pixels mapped from the ring."""

    kind: ClassVar[Literal["shm"]] = "shm"

    def __init__(self, ctx: PathContext, info: StreamInfo) -> None:
        self._ctx = ctx
        self._name = ctx.request.name
        self._topic = topic(self._name)
        self._info = info
        self._socket = ctx.context.socket(zmq.SUB)
        self._socket.linger = 0
        if ctx.request.mode == "latest":
            self._socket.conflate = True  # keep only the newest descriptor
        else:
            self._socket.rcvhwm = ctx.request.queue
        self._socket.setsockopt(zmq.SUBSCRIBE, self._topic)
        self._endpoint: str | None = None
        self._ring: RingReader | None = None
        self._retired: collections.deque[bytes] = collections.deque(maxlen=16)
        self._with_history = ctx.request.mode == "all"
        self._history_taken: bytes | None = None  # token of the ring whose history was looked at
        self._backlog: _Backlog | None = None
        self.last_message = 0.0
        # The wake-up: offered once a ring's descriptors are believed (the template), taken
        # once its writer says yes; then the ring's head, not the descriptors, says what
        # came, and the descriptor socket is unsubscribed (its fd leaves the poller).
        self._poller = select.epoll()  # fileno(): the descriptor socket, or the wake-up
        self._zmq_fd = int(self._socket.getsockopt(zmq.FD))
        self._poller.register(self._zmq_fd, select.EPOLLIN)
        self._subscribed = True
        self._template: Descriptor | None = None  # the last descriptor of the ring believed
        self._offer: WakeChannel | None = None  # an eventfd offered, not answered yet
        self._offered = 0.0
        self._woken: Woken | None = None
        self._woken_tokens: set[bytes] = set()  # rings read by wake-ups, now or before
        self._offer_after = 0.0
        try:
            self.update(info)
        except BaseException:  # an endpoint ZeroMQ refuses, a ring not ours to read
            self._socket.close(linger=0)
            self._poller.close()
            raise

    def update(self, info: StreamInfo) -> None:
        self._info = info
        if info.endpoint != self._endpoint:
            # A reader the ring is closed to hears nothing (nor is the descriptor socket
            # open to it): tell it now rather than let it time out.
            check_readable(info.segment)
            # Connect first: an endpoint ZeroMQ refuses leaves the old connection alone.
            self._socket.connect(info.endpoint)
            if self._endpoint is not None:
                self._socket.disconnect(self._endpoint)
            log.info("%s: subscribed to %s", self._name, info.endpoint)
            self._endpoint = info.endpoint

    def receive(self, wait: float) -> Frame | None:
        if self._woken is not None:  # first: the common case, woken by the ring
            return self._receive_woken(wait)
        if self._backlog is not None:
            frame = self._from_backlog()
            if frame is not None:
                return frame
            # None: the backlog is over, and its last frames were lapped; read on.
        if self._offer is not None:
            self._answered()
        if self._woken is not None:
            return self._receive_woken(wait)
        if not self._socket.poll(_milliseconds(wait), zmq.POLLIN):
            return None
        frame = self._accept(self._socket.recv())
        if (self._template is not None and self._offer is None and self._backlog is None
                and time.monotonic() >= self._offer_after):
            self._offer_wake(self._template)
        return frame

    def fileno(self) -> int | None:
        return self._poller.fileno()

    def pending(self) -> bool:
        if self._backlog is not None:
            return True
        if self._woken is not None:
            return self._woken.pending()
        return bool(int(self._socket.getsockopt(zmq.EVENTS)) & zmq.POLLIN)

    # -- the wake-up -------------------------------------------------------------------

    def _offer_wake(self, template: Descriptor) -> None:
        """Offer the ring's writer an eventfd; its answer is read by a later call."""
        self._offer_after = time.monotonic() + WAKE_RETRY
        self._offer = WakeChannel.start(self._name, template.token)
        if self._offer is not None:
            self._offered = time.monotonic()
            self._poller.register(self._offer.conn, select.EPOLLIN)

    def _answered(self) -> None:
        offer = self._offer
        assert offer is not None
        yes = offer.answer()
        if yes is None and time.monotonic() - self._offered < WAKE_RETRY:
            return
        self._offer = None
        template, ring = self._template, self._ring
        if not yes or template is None or ring is None or ring.token != template.token:
            self._poller.unregister(offer.conn)
            offer.close()
            self._subscribe(True)  # after a new ring was followed unsubscribed (_rewake)
            return
        self._woken = Woken(offer, ring, template, self._ctx.counts,
                            latest=self._ctx.request.mode == "latest")
        self._woken_tokens.add(template.token)
        self._subscribe(False)
        self._poller.register(offer.efd, select.EPOLLIN)
        log.debug("%s: woken by the writer of ring %s", self._name, template.token.hex())

    def _receive_woken(self, wait: float) -> Frame | None:
        woken = self._woken
        assert woken is not None
        frame = woken.take()
        if frame is None:
            if woken.channel.lost():
                self._leave_woken()
                self._rewake(woken)
                return None
            if wait > 0 and self._poller.poll(wait):
                frame = woken.take()
        if frame is not None:
            self.last_message = time.monotonic()
        return frame

    def _leave_woken(self) -> None:
        """The writer ended the wake-up (it stopped, died or replaced its ring): back to the
        descriptors, which tell of whatever comes next."""
        woken = self._woken
        if woken is None:
            return
        self._woken = None
        self._poller.unregister(woken.channel.efd)
        self._poller.unregister(woken.channel.conn)
        woken.channel.close()
        self._subscribe(True)
        self._offer_after = time.monotonic() + WAKE_RETRY / 2

    def _rewake(self, old: Woken) -> None:
        """The writer ended the wake-up: if it did so for a new ring of its own (a new
        generation), offer it an eventfd for that ring at once, still unsubscribed. The
        descriptors of the new ring's first frames were sent while this reader was not
        subscribed; its ring still has them, and the wake-up finds them there."""
        try:
            ring = RingReader.open(self._info.segment)
        except RingError:
            return
        writer = ring.header.writer_pid
        if (ring.token == old.token or writer != old.ring.header.writer_pid
                or not pid_alive(writer)):
            ring.close()
            return  # the same ring (a new time base), or another producer: descriptors tell
        g = ring.geometry
        self._template = msgspec.structs.replace(
            old.template, token=ring.token, generation=ring.generation, shape=g.shape,
            dtype=g.dtype.str, fmt=g.fmt, seq=-1, slot=0)
        self._ring = ring
        self._ctx.on_new_ring(ring.token)
        self._subscribe(False)
        self._offer_wake(self._template)
        if self._offer is None:
            self._subscribe(True)

    def _subscribe(self, on: bool) -> None:
        """Take the descriptors (and watch their socket), or not; idempotent."""
        if on != self._subscribed:
            self._subscribed = on
            self._socket.setsockopt(zmq.SUBSCRIBE if on else zmq.UNSUBSCRIBE, self._topic)
            if on:
                self._poller.register(self._zmq_fd, select.EPOLLIN)
            else:
                self._poller.unregister(self._zmq_fd)

    def abandon(self) -> None:
        pass  # descriptors need no asking: nothing is outstanding

    def retire(self, token: bytes) -> None:
        """Frames of ring *token* are stale now: a descriptor of it still queued is dropped.

        Without this, the last descriptor of a producer that died would be returned,
        seconds late, after a new producer took over the stream.
        """
        self._retired.append(token)
        if self._woken is not None and self._woken.token == token:
            self._leave_woken()

    def close(self) -> None:
        self._leave_woken()
        if self._offer is not None:
            self._offer.close()
            self._offer = None
        self._poller.close()
        self._socket.close(linger=0)
        self._backlog = None
        self._ring = None  # unmapped once the frames the caller still holds are gone

    def _accept(self, message: bytes) -> Frame | None:
        """The frame a descriptor points at, if every field of it tells the truth.

        Anyone who can reach the descriptor socket can send anything on it, so a
        descriptor is believed only as far as the ring confirms it; a lie must cost one
        rejected message, never a wrong frame nor the accounting of the true ones.
        """
        self.last_message = time.monotonic()
        counts = self._ctx.counts
        try:
            if not message.startswith(self._topic):
                raise ProtocolError("descriptor of another stream")
            desc = Descriptor.unpack(message[len(self._topic):])
            if desc.stream != self._name:
                raise ProtocolError(f"descriptor of stream {desc.stream!r} under the topic "
                                    f"of {self._name!r}")
            if desc.token in self._retired:
                return None
            ring = self._ring_for(desc)
            if ring is None:
                if desc.token not in self._known_tokens():
                    raise ProtocolError("descriptor of a ring that is not in shared memory")
                counts.missed(1)  # a ring we knew, replaced since the descriptor was sent
                return None
            check_against_ring(desc, ring)
            if not counts.is_new(desc.token, desc.seq):
                if desc.token in self._woken_tokens:
                    return None  # sent before we unsubscribed: its frame came by the ring
                raise ProtocolError(f"frame {desc.seq} again, or older than one already seen")
            record = ring.slot_info(desc.slot)
            if not ring.holds(desc.slot, desc.seq):  # then the record is that frame's
                counts.seen(desc.token, desc.seq)
                counts.missed(1)  # lapped before we could take it
                return None
            check_against_slot(desc, record)
        except RingNotReadable:
            raise
        except (ProtocolError, RingError) as exc:
            counts.reject("a descriptor", exc)
            return None
        self._template = desc
        if self._with_history and desc.token != self._history_taken:
            return self._start_backlog(desc, ring)
        counts.seen(desc.token, desc.seq)
        return Frame(desc, counts.returned(), ring=ring)

    # -- history (mode "all") ----------------------------------------------------------

    def _start_backlog(self, first: Descriptor, ring: RingReader) -> Frame | None:
        """The first true descriptor of a ring: its older frames, then it, come next.

        Only once per ring, so that a frame the ring's descriptors brought already is never
        returned again from its slot. Before the first descriptor, ZeroMQ may have dropped
        any of them: the ring is where they still are.
        """
        self._history_taken = first.token
        self._backlog = _Backlog(ring, first, self._oldest_unseen(first, ring))
        return self._from_backlog()

    def _oldest_unseen(self, first: Descriptor, ring: RingReader) -> int:
        """The seq of the oldest frame before *first* that the ring holds whole and this
        subscriber has not seen; first.seq when there is none.

        The frames older than that fell out of the ring before this subscriber came, and
        are not its gap: it starts here. One it has seen (it returned it before, on another
        path to the same ring) is never returned twice.
        """
        counts = self._ctx.counts
        seq = min(first.seq, max(0, ring.head - ring.slot_count + 1))
        while seq < first.seq and not (counts.is_new(first.token, seq)
                                       and ring.holds(ring.slot_of(seq), seq)):
            seq += 1
        return seq

    def _from_backlog(self) -> Frame | None:
        """The backlog's next frame still whole; None once it is over (the first descriptor's
        own frame comes last, and may have been lapped meanwhile).

        A frame lapped while it waited is skipped here and counted, as a gap, by the next
        one returned (Counts.seen): it is in dropped and frame.skipped, never returned stale.
        """
        backlog = self._backlog
        assert backlog is not None
        counts = self._ctx.counts
        if backlog.first.token in self._retired:
            self._backlog = None  # its producer was replaced: stale, like its descriptors
            return None
        while backlog.next_seq < backlog.first.seq:
            seq = backlog.next_seq
            backlog.next_seq += 1
            desc = older_descriptor(backlog.first, backlog.ring, seq)
            if desc is not None:
                counts.seen(desc.token, desc.seq)
                return Frame(desc, counts.returned(), ring=backlog.ring)
        self._backlog = None
        first = backlog.first
        counts.seen(first.token, first.seq)
        if not backlog.ring.holds(first.slot, first.seq):
            counts.missed(1)  # lapped while the older ones were being returned
            return None
        return Frame(first, counts.returned(), ring=backlog.ring)

    def _ring_for(self, desc: Descriptor) -> RingReader | None:
        """The mapped ring that *desc* points into, mapping it if it is new.

        The ring itself says whether the token is real: a made-up one costs a look at
        /dev/shm, never a question to the broker.
        """
        if self._ring is not None and self._ring.token == desc.token:
            return self._ring
        try:
            ring = RingReader.open(self._info.segment)
        except RingNotReadable:
            raise  # it will stay so: the caller hears why rather than wait for a Timeout
        except RingError:
            return None  # replaced or removed since the descriptor was sent
        if ring.token != desc.token:
            ring.close()
            return None
        if self._info.token != desc.token:
            self._ctx.on_new_ring(desc.token)  # a new producer or generation: tell the broker's
        if self._ring is not None:
            log.info("%s: new ring (generation %d, %s)", self._name, ring.generation,
                     ring.geometry.shape)
        # The old ring is not closed: frames still held keep it mapped until they go.
        self._ring = ring
        return ring

    def _known_tokens(self) -> set[bytes]:
        """Rings of the stream that really existed: the broker's, and the one mapped."""
        known = {self._info.token}
        if self._ring is not None:
            known.add(self._ring.token)
        return known


@dataclass
class _Backlog:
    """A ring's frames older than its first descriptor, being returned before it."""

    ring: RingReader
    #: The ring's first descriptor: returned last, and the template of the older frames.
    first: Descriptor
    #: The seq of the next older frame to return.
    next_seq: int


def _milliseconds(wait: float) -> int:
    """A wait in seconds as zmq's poll takes it: 0 stays 0 (do not wait), any other at
    least 1 ms."""
    return 0 if wait <= 0 else int(wait * 1000) or 1
