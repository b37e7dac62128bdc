"""The reader's side of a remote packet stream: every packet, in order, through the relay of
the producer's host (framebus/remote/packet_service.py is the relay's side).

A PacketSubscriber whose stream is on another host reads through this, behind the same
API: the same Packet objects (``data`` a read-only view of the message that carried it),
the same ``skipped`` and ``dropped`` counts. It reads the next batch off its socket only
once the batch before is handed out, and each request it sends says how many it has read,
so what waits for a slow reader waits in the relay's bounded buffer (and is skipped, and
counted, once it falls out), never in an unbounded queue here. Packets are checked in
sequence: one missing without the relay saying so is counted as lost, never hidden.
"""

from __future__ import annotations

import collections
import logging
import math
import time
from typing import Protocol, cast

import zmq

from ..errors import ProtocolError
from ..packets.layout import CodecInfo
from ..packets.packet import Packet
from ..packets.ring import Entry, PacketRingReader
from ..paths.connection import RelayConnection
from ..protocol import relay as wire
from ..protocol.relay_packets import PacketBatch, parse_batch
from ..support.backoff import Backoff
from ..support.throttle import Throttle

log = logging.getLogger("framebus.packets")

#: Ask again (and say it is still there) after this long without a message (seconds).
ASK_AGAIN_AFTER = 1.0
REFUSED_FIRST, REFUSED_CAP = 0.1, 2.0


class Counts(Protocol):
    """The figures of the PacketSubscriber this reads for."""

    received: int
    dropped: int
    rejected: int


class BatchData:
    """What a Packet reads its bytes and ring facts from: one batch of a relay's message,
    in the place of a ring (whole by construction: nothing writes over it)."""

    def __init__(self, batch: PacketBatch, codec: CodecInfo, data: memoryview) -> None:
        self.token, self.generation, self.codec = batch.token, batch.generation, codec
        self._data = data

    def view(self, entry: Entry) -> memoryview:
        return self._data[entry.pos:entry.pos + entry.size]

    def intact(self, entry: Entry) -> bool:
        return True

    def copy(self, entry: Entry) -> bytes:
        return bytes(self.view(entry))


class RemotePackets:
    """Every packet of stream *name*, from the relay at *endpoint*."""

    def __init__(self, context: zmq.Context, name: str, endpoint: str, *, preroll: float,
                 latest: bool) -> None:
        self.name, self.endpoint = name, endpoint
        self._context, self._preroll, self._latest = context, preroll, latest
        self._relay = RelayConnection(context, endpoint)
        log.info("%s: packets through the relay at %s", name, endpoint)
        self._queue: collections.deque[Packet] = collections.deque()
        self._batches = 0  # batches read on this connection
        self._token: bytes | None = None  # the ring of the last packet taken in
        self._after = -1  # ... and its seq
        self.codec: CodecInfo | None = None
        self.bytes = 0  # payload bytes received
        self._asked = 0.0
        self.last_message = time.monotonic()  # when the relay last said anything
        self._quiet_until = 0.0
        self._refused = False
        self._refusals = Backoff(REFUSED_FIRST, REFUSED_CAP, stable_after=math.inf)
        self._said = Throttle(log, 10.0)
        self._ask()

    def take(self, counts: Counts) -> Packet | None:
        """The next packet if one is here now, else None; never waits."""
        self._relay.check_handshake()
        while not self._queue and self._read_one(counts):
            pass
        if self._latest and len(self._queue) > 1:
            while self._read_one(counts):
                pass
            while len(self._queue) > 1:  # latest: the newest only, the rest counted lost
                self._queue.popleft()
                counts.dropped += 1
                self._queue[0].skipped += 1
        now = time.monotonic()
        if now >= self._quiet_until and (self._refused or now - self._asked > ASK_AGAIN_AFTER):
            self._ask()  # refused a pause ago; or the relay restarted, or forgot a silent reader
        if not self._queue:
            return None
        packet = self._queue.popleft()
        counts.received += 1
        return packet

    def wait(self, timeout: float) -> bool:
        """Wait up to *timeout* seconds for a message; whether one is there."""
        if self._queue:
            return True
        return bool(self._relay.socket.poll(max(0, int(timeout * 1000)), zmq.POLLIN))

    def wait_codec(self, timeout: float, counts: Counts) -> CodecInfo | None:
        """The codec, waiting up to *timeout* for the relay's first batch if none came yet."""
        deadline = time.monotonic() + timeout
        while self.codec is None and self.wait(deadline - time.monotonic()):
            if not self._read_one(counts) and time.monotonic() >= deadline:
                break
        return self.codec

    def fileno(self) -> int:
        return int(self._relay.socket.getsockopt(zmq.FD))

    def move_to(self, endpoint: str) -> None:
        """The stream's host has a relay elsewhere now: read on from there, from the packet
        after the last one taken in (the new relay's feed holds what its ring still has)."""
        relay = RelayConnection(self._context, endpoint)
        self._relay.close()
        self._relay, self.endpoint = relay, endpoint
        self._batches = 0  # counted per connection
        self._refusals.reset()
        self._quiet_until = 0.0
        log.info("%s: packets through the relay at %s, which moved there", self.name, endpoint)
        self._ask()

    def _ask(self) -> None:
        want = wire.PacketsWant(stream=self.name, token=self._token, after=self._after,
                                batches=self._batches, preroll=self._preroll)
        try:
            self._relay.socket.send(want.pack(), zmq.NOBLOCK)
        except zmq.Again:
            pass  # not connected yet: asked again within ASK_AGAIN_AFTER
        self._asked = time.monotonic()
        self._refused = False

    def _read_one(self, counts: Counts) -> bool:
        """Read one message if one is there; whether one was."""
        socket = self._relay.socket
        if not socket.poll(0, zmq.POLLIN):
            return False
        parts = socket.recv_multipart(copy=False)
        self._asked = self.last_message = time.monotonic()  # no need to ask before a second
        try:
            self._accept(parts, counts)
        except ProtocolError as exc:
            counts.rejected += 1
            self._said.warning("%s: rejected a message from the relay: %s", self.name, exc,
                               key="rejected")
        return True

    def _accept(self, parts: list[zmq.Frame], counts: Counts) -> None:
        kind = parts[0].bytes
        if kind == wire.ERROR and len(parts) == 2:
            code, message = wire.parse_error(parts[1].bytes)
            self._said.warning("%s: the relay says %s: %s", self.name, code, message, key=code)
            self._quiet_until = time.monotonic() + self._refusals.next()
            self._refused = True  # asked again once the pause is over
            return
        if kind != wire.PACKETS or len(parts) != 3:
            raise ProtocolError("not a packet batch")
        data = parts[2].buffer
        batch = parse_batch(parts[1].buffer, len(data))
        if batch.stream != self.name:
            raise ProtocolError(f"packets of {batch.stream!r}, not {self.name!r}")
        self._batches = max(self._batches, batch.number + 1)
        self._ask()  # says how many it has read: the relay may send one more
        self._refusals.reset()
        self.codec = codec = batch.codec.info()
        source = cast(PacketRingReader, BatchData(batch, codec, data))  # a ring's stand-in
        pos = 0
        for wired in batch.entries:
            entry, pos = wired.entry(pos), pos + wired.size
            skipped = wired.skipped
            if batch.token == self._token:
                if wired.seq <= self._after:
                    continue  # had it already (sent again after a reconnection)
                skipped = max(skipped, wired.seq - self._after - 1)  # lost on the way too
            self._token, self._after = batch.token, wired.seq
            counts.dropped += skipped
            self.bytes += wired.size
            self._queue.append(Packet(self.name, source, entry, skipped))

    def close(self) -> None:
        self._relay.close()
