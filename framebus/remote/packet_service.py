"""The relay's packet streams: each remote reader of packets gets every packet, in order,
from the stream's feed (framebus/remote/packet_feed.py), at its own pace.

Flow control is by batches: a reader says how many batches it has read, and the relay sends
at most MAX_BATCHES_AHEAD beyond, each batch everything new up to BATCH_BYTES. A reader that
keeps up gets each packet as it comes; one that falls behind gets big batches; one that
falls out of the feed's buffer skips to its oldest packet and is told how many it lost.
Every request says where the reader is (the ring's token and the last seq it has), so a
reader that reconnects, or a relay that restarted, carries on from there without a gap while
the buffer still holds it.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import zmq

from .. import config
from ..protocol import relay as wire
from ..protocol.relay_packets import MAX_ENTRIES, PacketBatch, WireCodec, WireEntry
from .feeds import FeedPool
from .packet_feed import Buffered, PacketFeed
from .packet_limits import DEFAULT_LIMITS, BufferLimits

log = logging.getLogger("framebus.remote.relay")

#: A batch carries about this many bytes at most (a bigger packet goes alone).
BATCH_BYTES = 1 << 20
MAX_FEEDS = 64
MAX_READERS = 256
READER_IDLE = 30.0  # forget a reader silent this long (they ask every second)
FEED_IDLE = 10.0


@dataclass
class Reader:
    """One remote reader of a packet stream."""

    socket: zmq.Socket
    identity: bytes
    want: wire.PacketsWant
    last_seen: float
    cursor: int | None = None  # the feed's index of the next packet to send; None: not yet
    await_key: bool = False  # a new reader without history starts at a key frame
    sent: int = 0  # batches sent on this connection
    skipped: int = 0  # lost, to be told with the next packet


class PacketService:
    """Serves packet streams to remote readers, from the relay's loop."""

    def __init__(self, broker: str, context: zmq.Context,
                 limits: BufferLimits = DEFAULT_LIMITS) -> None:
        self._broker, self._context = broker, context
        self._feeds = FeedPool(lambda stream: PacketFeed(stream, broker, context, limits),
                               most=MAX_FEEDS, idle=FEED_IDLE)
        self._readers: dict[tuple[int, bytes], Reader] = {}
        self.sent = 0  # packets sent

    def on_request(self, socket: zmq.Socket, key: tuple[int, bytes], want: wire.PacketsWant,
                   known: frozenset[str]) -> tuple[str, str] | None:
        """A reader's request (its first, or an acknowledgement), *known* the packet streams
        the broker knows on this host; a refusal's code and reason, or None."""
        reader = self._readers.get(key)
        if reader is None:
            if want.stream not in known and want.stream not in self._feeds:
                # A feed costs a thread: none for a name the broker has not heard of. The
                # reader asks again after a pause (a producer may be starting).
                return "not_found", (f"no packet stream named {want.stream!r} on host "
                                     f"{config.host_id()} (a decoder publishes its source's "
                                     "packets; a Publisher's stream has none)")
            if len(self._readers) >= MAX_READERS:
                return "full", f"the relay serves {MAX_READERS} packet readers already"
            feed = self._feeds.want(want.stream, self._wanted())
            if feed is None:
                return "full", f"the relay reads {MAX_FEEDS} packet streams already"
            # Its count of batches goes on from what it has read (from a relay before this
            # one, say): the batches ahead of it are counted from there.
            reader = self._readers[key] = Reader(socket, key[1], want, time.monotonic(),
                                                 sent=want.batches)
            log.info("packet reader %s wants %s", key[1].hex()[:8], want.stream)
        reader.want, reader.last_seen = want, time.monotonic()
        self._serve(reader)
        return None

    def forget(self, key: tuple[int, bytes]) -> None:
        self._readers.pop(key, None)

    def on_new_packets(self, stream: str) -> None:
        for reader in self._readers.values():
            if reader.want.stream == stream:
                self._serve(reader)

    def _serve(self, reader: Reader) -> None:
        """Send *reader* what it may have now: batches up to MAX_BATCHES_AHEAD."""
        feed = self._feeds.get(reader.want.stream)
        if feed is None or not feed.ready.is_set():
            return  # its first packets come with the feed's first notice
        if reader.cursor is None:
            reader.cursor, reader.await_key, reader.skipped = _start(feed, reader.want)
            newest = feed.buffer.newest()
            if newest is not None and not self._send(reader, [], newest):
                return  # (the codec at once, before any packet: what a recorder asks first)
        while reader.sent - reader.want.batches < wire.MAX_BATCHES_AHEAD:
            first = feed.buffer.first_index
            if reader.cursor < first:  # fell out of the buffer: a gap, said with the next
                reader.skipped += first - reader.cursor
                reader.cursor = first
            packets = feed.buffer.since(reader.cursor, BATCH_BYTES)[:MAX_ENTRIES]
            if not packets:
                return
            reader.cursor = packets[-1].index + 1
            if reader.await_key:
                packets = _from_key(packets)
                if not packets:
                    continue
                reader.await_key = False
            if not self._send(reader, packets, packets[0]):
                return

    def _send(self, reader: Reader, packets: list[Buffered], first: Buffered) -> bool:
        """Send *packets*, all of *first*'s ring (none: a batch that tells its codec)."""
        entries = [WireEntry.of(p.entry, p.skipped) for p in packets]
        if entries:
            entries[0].skipped += reader.skipped
        batch = PacketBatch(stream=reader.want.stream, number=reader.sent, token=first.token,
                            generation=first.generation, codec=WireCodec.of(first.codec),
                            entries=entries)
        data = b"".join(p.data for p in packets)
        try:
            reader.socket.send_multipart([reader.identity, wire.PACKETS, batch.pack(), data],
                                         zmq.NOBLOCK, copy=len(data) < 65536)
        except zmq.ZMQError:
            return False  # gone: forgotten when it has been silent for READER_IDLE
        reader.sent += 1
        reader.skipped = 0 if entries else reader.skipped
        self.sent += len(packets)
        return True

    def _wanted(self) -> set[str]:
        return {r.want.stream for r in self._readers.values()}

    def sweep(self, now: float) -> None:
        for key, reader in list(self._readers.items()):
            if now - reader.last_seen > READER_IDLE:
                del self._readers[key]
        self._feeds.sweep(self._wanted(), now)

    def close(self) -> None:
        self._feeds.close()


def _start(feed: PacketFeed, want: wire.PacketsWant) -> tuple[int, bool, int]:
    """Where a new reader starts: (index, await a key frame, packets it lost meanwhile).

    After the packet it says it has, if the buffer holds that ring (else from the buffer's
    oldest key frame: a new ring, as a local reader meets one); without one, at the oldest
    key frame *preroll* seconds old at most, or the next key frame."""
    packets = feed.buffer.snapshot()
    if want.token is not None:
        mine = [p for p in packets if p.token == want.token]
        if mine:
            later = [p for p in mine if p.entry.seq > want.after]
            if not later:
                return mine[-1].index + 1, False, 0
            return later[0].index, False, max(0, later[0].entry.seq - want.after - 1)
        keys = [p for p in packets if p.entry.keyframe]
        return (keys[0].index, False, 0) if keys else (feed.buffer.next_index, True, 0)
    if want.preroll:
        since = time.time_ns() - int(want.preroll * 1e9)
        for p in packets:
            if p.entry.keyframe and p.entry.timestamp_ns >= since:
                return p.index, False, 0
    return feed.buffer.next_index, True, 0


def _from_key(packets: list[Buffered]) -> list[Buffered]:
    for i, p in enumerate(packets):
        if p.entry.keyframe:
            return packets[i:]
    return []
