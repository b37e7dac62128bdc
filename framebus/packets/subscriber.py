"""PacketSubscriber: the compressed packets of a stream on this host, in order.

The packet ring is the truth: its index says which packets it holds, each under its
entry's stamp. Descriptors on ZeroMQ only wake the subscriber (a descriptor that does not
match the ring is rejected and counted, never believed) and tell it of a new ring: a
producer restarted, or its codec changed (a new generation). So mode "all" loses nothing
that is still in the ring, slow joiner or full queue alike: a packet lapped before it is
read is counted in ``dropped``, never returned stale.

Where a subscriber starts: ``preroll=0``, at the next key frame; ``preroll=N``, at the
oldest key frame at most N seconds old still in the ring (else the next one). A new ring
is read from its oldest key frame still there.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Literal

import zmq

from .. import config
from ..discovery import BrokerClient
from ..errors import (
    BrokerUnavailable,
    FramebusError,
    ProtocolError,
    RingError,
    RingNotReadable,
    StreamNotFound,
    Timeout,
)
from ..names import topic, validate_stream_name
from ..paths.watch import PathWatch
from ..protocol.packet import PacketDescriptor
from . import where
from .layout import CodecInfo
from .packet import Packet
from .ring import PacketRingReader

if TYPE_CHECKING:
    from ..remote.packet_reader import RemotePackets

log = logging.getLogger(__name__)

#: How often, at most, the subscriber looks at the ring and the broker when no descriptor
#: comes (seconds): a missed wake-up costs at most this much latency.
POLL = 0.05
LOOKUP_EVERY = 0.5
#: A remote reader that heard nothing from its relay this long asks the broker, every
#: LOOKUP_EVERY, whether the relay moved (restarted on another address, say).
MOVED_AFTER = 2.0


class PacketSubscriber:
    """Receive the packets of stream *name* (its packet stream, beside its pixels)."""

    def __init__(self, name: str, *, broker: str | None = None,
                 mode: Literal["all", "latest"] = "all", preroll: float = 0.0,
                 context: zmq.Context | None = None, lookup_timeout: float = 0.5,
                 lookup_every: float = LOOKUP_EVERY) -> None:
        self._closed = True
        self.name = validate_stream_name(name)
        if mode not in ("all", "latest"):
            raise ValueError(f"mode must be 'all' or 'latest', got {mode!r}")
        if preroll < 0:
            raise ValueError(f"preroll must be >= 0 seconds, got {preroll}")
        self.mode = mode
        self.preroll = float(preroll)
        #: How often the broker is asked again whether the ring moved (a producer restarted
        #: elsewhere): a reader of many streams asks less often, as descriptors tell it too.
        self.lookup_every = lookup_every
        self.dropped = 0
        self.received = 0
        self.rejected = 0
        self._own_context = context is None
        self._context = zmq.Context() if context is None else context
        self._topic = topic(name)
        self._socket = self._context.socket(zmq.SUB)
        self._socket.linger = 0
        self._socket.rcvhwm = 1000
        self._socket.setsockopt(zmq.SUBSCRIBE, self._topic)
        #: fileno(): the same descriptor whether it reads here or through a relay.
        self._watch = PathWatch()
        self._watch.watch(self._socket)
        # An event loop's reader passes a short lookup_timeout: a lookup runs in try_recv(),
        # and a broker that is away would stall the whole loop for as long each time.
        self._client = BrokerClient(broker, context=self._context, timeout=lookup_timeout)
        self._endpoint: str | None = None
        self._segment = where.segment_name(name)
        self._ring: PacketRingReader | None = None
        self._next: int | None = None  # seq of the next packet to return from self._ring
        self._first = True  # no ring read yet: preroll decides where to start
        self._await_key = False  # packets before the next key frame are passed over
        self._skipped = 0  # missed since the last packet returned
        self._next_lookup = 0.0
        #: The stream is on another host: its packets come through that host's relay.
        self._remote: RemotePackets | None = None
        self._closed = False

    # -- what callers use ----------------------------------------------------------------

    @property
    def codec(self) -> CodecInfo | None:
        """The codec of the ring being read (None before one is found)."""
        if self._ring is None and self._remote is None:
            self._find()
        if self._remote is not None:
            return self._remote.wait_codec(1.0, self)
        return None if self._ring is None else self._ring.codec

    def recv(self, timeout: float | None = None) -> Packet:
        """The next packet; Timeout if none comes within *timeout* seconds (None: wait)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            packet = self.try_recv()
            if packet is not None:
                return packet
            left = POLL if deadline is None else min(POLL, deadline - time.monotonic())
            if left <= 0:
                raise Timeout(f"no packet of {self.name} within {timeout} s")
            if self._remote is not None:
                self._remote.wait(left)
            elif self._socket.poll(max(1, int(left * 1000)), zmq.POLLIN):
                self._drain()

    def try_recv(self) -> Packet | None:
        """The next packet if one is ready now, else None; never waits."""
        if self._remote is None:
            self._drain()
        if self._ring is None and self._remote is None and not self._find():
            return None
        if self._remote is None:
            return self._take()
        self._follow_relay(self._remote)
        return self._remote.take(self)

    def __iter__(self) -> Iterator[Packet]:
        while not self._closed:
            yield self.recv()

    def fileno(self) -> int:
        """Readable when a packet may have come; the same descriptor for the subscriber's
        life. Like ZeroMQ's, it may signal only a change: read until try_recv() gives None
        before waiting on it again."""
        return self._watch.fileno()

    # -- reading the ring ------------------------------------------------------------------

    def _take(self) -> Packet | None:
        ring = self._ring
        assert ring is not None
        head = ring.head
        if self._next is None:
            self._next = self._start(ring)
        if self.mode == "latest" and head >= self._next:
            self._skip(head - self._next)
        while self._next <= head:
            seq = self._next
            entry = ring.entry(seq)
            if entry is None or not ring.intact(entry):
                oldest = self._oldest(ring, seq)
                self._skip(oldest - seq if oldest > seq else 1)
                continue
            self._next = seq + 1
            if self._await_key and not entry.keyframe:
                continue  # not lost: this subscriber starts at a key frame
            self._await_key = False
            self.received += 1
            skipped, self._skipped = self._skipped, 0
            return Packet(self.name, ring, entry, skipped)
        if self._stale(ring):
            self._find()
        return None

    def _skip(self, n: int) -> None:
        assert self._next is not None
        self._next += n
        self.dropped += n
        self._skipped += n

    @staticmethod
    def _oldest(ring: PacketRingReader, after: int) -> int:
        """The oldest seq from *after* on that the ring still holds whole."""
        head = ring.head
        seq = max(after, head - ring.header.index_count + 1)
        while seq <= head:
            entry = ring.entry(seq)
            if entry is not None and ring.intact(entry):
                return seq
            seq += 1
        return head + 1

    def _start(self, ring: PacketRingReader) -> int:
        """Where to start reading *ring*: preroll's oldest key frame, else the next one."""
        head = ring.head
        first, self._first = self._first, False
        if first and not self.preroll:
            return self._next_key(ring, head + 1)
        since = time.time_ns() - int(self.preroll * 1e9) if first else 0
        seq = self._oldest(ring, 0)
        while seq <= head:
            entry = ring.entry(seq)
            if entry is not None and entry.keyframe and entry.timestamp_ns >= since:
                return seq
            seq += 1
        return self._next_key(ring, head + 1)

    def _next_key(self, ring: PacketRingReader, seq: int) -> int:
        """*seq*, once it is known to be a key frame: packets before the next key frame are
        skipped as they come (without counting: nothing was lost)."""
        self._await_key = True
        return seq

    # -- finding the ring ------------------------------------------------------------------

    def _drain(self) -> None:
        """Read the queued descriptors: each checked, a new ring's followed."""
        while self._socket.poll(0, zmq.POLLIN):
            message = self._socket.recv()
            try:
                if not message.startswith(self._topic):
                    raise ProtocolError("packet descriptor of another stream")
                desc = PacketDescriptor.unpack(message[len(self._topic):])
                if desc.stream != self.name:
                    raise ProtocolError(f"packet descriptor of stream {desc.stream!r}")
                if self._ring is not None and desc.token == self._ring.token:
                    if desc.seq > self._ring.head or desc.generation != self._ring.generation:
                        raise ProtocolError("packet descriptor that its ring does not confirm")
                    continue
                if not self._map(desc.token):
                    raise ProtocolError("packet descriptor of a ring not in shared memory")
            except ProtocolError as exc:
                self.rejected += 1
                log.debug("%s: rejected a packet descriptor: %s", self.name, exc)

    def _find(self) -> bool:
        """Look the stream up (at most every LOOKUP_EVERY) and map its ring; whether one is."""
        now = time.monotonic()
        if now < self._next_lookup:
            return self._ring is not None
        self._next_lookup = now + (self.lookup_every if self._ring is not None else 0.1)
        info = None
        try:
            info = self._client.lookup(self.name, kind="packets")
            if info.host != config.host_id():
                return self._go_remote(info.relay, info.host)
            endpoint, segment = info.endpoint, info.segment
        except (StreamNotFound, BrokerUnavailable):
            # No broker, or not registered yet: the names this host's producer uses.
            endpoint, segment = where.descriptor_endpoint(self.name), where.segment_name(self.name)
        except FramebusError as exc:
            log.warning("%s: packet lookup failed: %s", self.name, exc)
            return self._ring is not None
        if endpoint != self._endpoint:
            try:
                self._socket.connect(endpoint)
            except zmq.ZMQError as exc:
                log.warning("%s: cannot connect to %s: %s", self.name, endpoint, exc)
                return self._ring is not None
            if self._endpoint is not None:
                self._socket.disconnect(self._endpoint)
            self._endpoint = endpoint
        self._segment = segment
        if self._ring is not None and info is not None and info.token == self._ring.token:
            return True  # the ring we read: not mapped again to find that out
        self._map(None)
        return self._ring is not None

    def _go_remote(self, relay: str | None, host: str) -> bool:
        """The stream is on another host: read it through that host's relay, if one runs."""
        if relay is None:
            log.warning("%s: its packets are on host %s, which runs no relay", self.name, host)
            return False
        from ..remote.packet_reader import RemotePackets  # here: a local reader never needs it

        self._remote = RemotePackets(self._context, self.name, relay, preroll=self.preroll,
                                     latest=self.mode == "latest")
        self._watch.watch(self._remote)
        return True

    def _follow_relay(self, remote: RemotePackets) -> None:
        """A remote reader whose relay went quiet asks the broker whether it moved."""
        now = time.monotonic()
        if now - remote.last_message < MOVED_AFTER or now < self._next_lookup:
            return
        self._next_lookup = now + self.lookup_every
        try:
            relay = self._client.lookup(self.name, kind="packets").relay
        except FramebusError:
            return  # away, or the stream is gone: the relay, or the broker, comes back
        if relay is not None and relay != remote.endpoint:
            self._watch.unwatch()  # before the old socket closes: its number may be reused
            remote.move_to(relay)
            self._watch.watch(remote)

    def _map(self, token: bytes | None) -> bool:
        """Map the stream's ring if it is new (and carries *token*, if given)."""
        if self._ring is not None and token == self._ring.token:
            return True
        try:
            ring = PacketRingReader.open(self._segment)
        except RingNotReadable:
            raise  # it will stay so: the caller hears why rather than wait for a Timeout
        except RingError:
            return False
        if (token is not None and ring.token != token) or (
                self._ring is not None and ring.token == self._ring.token):
            ring.close()
            return token is None or self._ring is not None and self._ring.token == token
        if self._ring is not None:
            self._finish_old()
            log.info("%s: new packet ring (generation %d, %s)", self.name, ring.generation,
                     ring.codec.name)
        self._ring, self._next = ring, self._start(ring)  # from now: where it was asked for
        return True

    def _finish_old(self) -> None:
        """Before leaving a ring, count what it still had unread that was lost."""
        ring, seq = self._ring, self._next
        if ring is not None and seq is not None and seq <= ring.head:
            self.dropped += ring.head - seq + 1

    def _stale(self, ring: PacketRingReader) -> bool:
        """Whether the ring may have been replaced (checked every LOOKUP_EVERY)."""
        return time.monotonic() >= self._next_lookup

    # -- lifetime ----------------------------------------------------------------------

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._watch.close()
        self._socket.close(linger=0)
        if self._remote is not None:
            self._remote.close()
        self._client.close()
        if self._own_context:
            self._context.destroy(linger=0)
        self._ring = None

    def __enter__(self) -> PacketSubscriber:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass
