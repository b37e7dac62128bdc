"""A relay's packet feed: one packet stream read from its ring, its recent packets kept.

Remote readers of packets want every packet ("all"), each at its own pace, so the relay
keeps a bounded buffer of the stream's recent packets, copied out of the ring once (each
copy checked whole: a packet lapped in the ring before it was copied is a gap, never torn
bytes) and shared by all of them. A reader too slow for the buffer skips what fell out of
it, and is told how many packets it lost. The feed starts from the ring's oldest key frame,
so that a reader asking for history (preroll, or resuming after a relay restart) finds it.
"""

from __future__ import annotations

import collections
import logging
import threading
from dataclasses import dataclass

import zmq

from ..errors import FrameOverwritten, Timeout
from ..packets.layout import CodecInfo
from ..packets.packet import Packet
from ..packets.ring import Entry
from ..packets.subscriber import PacketSubscriber
from .feed import NOTIFY
from .packet_limits import DEFAULT_LIMITS, BufferLimits

log = logging.getLogger("framebus.remote.relay")

#: The feed reads history from the ring's oldest key frame at most this old (seconds).
HISTORY = 3600.0
#: The suffix of a feed's notices on the relay's inproc socket ('/' is in no stream name).
SUFFIX = "/packets"


@dataclass(frozen=True)
class Buffered:
    """One packet in the buffer: *index* counts the feed's packets, across rings."""

    index: int
    token: bytes
    generation: int
    codec: CodecInfo
    entry: Entry
    data: bytes
    skipped: int  # packets lost just before it, in the ring (lapped before it was copied)


class PacketBuffer:
    """The recent packets of one stream, by index; thread-safe (the feed appends, the
    relay's loop reads)."""

    def __init__(self, limits: BufferLimits = DEFAULT_LIMITS) -> None:
        self._packets: collections.deque[Buffered] = collections.deque()
        self._bytes = 0
        self._lock = threading.Lock()
        self._max_packets, self._max_bytes = limits.packets, limits.bytes
        self.next_index = 0  # the index the next packet gets

    def append(self, token: bytes, generation: int, codec: CodecInfo, entry: Entry,
               data: bytes, skipped: int) -> None:
        with self._lock:
            self._packets.append(Buffered(self.next_index, token, generation, codec, entry,
                                          data, skipped))
            self.next_index += 1
            self._bytes += len(data)
            while len(self._packets) > self._max_packets or (
                    self._bytes > self._max_bytes and len(self._packets) > 1):
                self._bytes -= len(self._packets.popleft().data)

    @property
    def first_index(self) -> int:
        """The index of the oldest packet kept (next_index when it holds none)."""
        with self._lock:
            return self._packets[0].index if self._packets else self.next_index

    def since(self, index: int, max_bytes: int) -> list[Buffered]:
        """Packets from *index* on, of the first one's ring only, about *max_bytes* at most
        (at least one)."""
        with self._lock:
            if not self._packets:
                return []
            first = self._packets[0].index
            out: list[Buffered] = []
            size = 0
            for i in range(max(index - first, 0), len(self._packets)):
                packet = self._packets[i]
                if out and (packet.token != out[0].token or size + len(packet.data) > max_bytes):
                    break
                out.append(packet)
                size += len(packet.data)
            return out

    def newest(self) -> Buffered | None:
        with self._lock:
            return self._packets[-1] if self._packets else None

    def snapshot(self) -> list[Buffered]:
        with self._lock:
            return list(self._packets)


class PacketFeed(threading.Thread):
    """Reads one packet stream into its buffer, and tells the relay's loop of new packets."""

    def __init__(self, name: str, broker: str, context: zmq.Context,
                 limits: BufferLimits = DEFAULT_LIMITS) -> None:
        super().__init__(name=f"framebus-relay-packets-{name}", daemon=True)
        self.stream = name
        self.broker = broker
        self.buffer = PacketBuffer(limits)
        #: Set once the feed has read what the ring held when it started: a reader's start
        #: (its preroll, its resumption) is decided only then.
        self.ready = threading.Event()
        self.idle_since: float | None = None
        self._context = context
        self._stopping = threading.Event()
        self._lost = 0  # packets lost since the last one kept

    def run(self) -> None:
        notify = self._context.socket(zmq.PUSH)
        notify.linger = 0
        notify.connect(NOTIFY)
        try:
            with PacketSubscriber(self.stream, broker=self.broker, preroll=HISTORY,
                                  context=self._context) as sub:
                while not self._stopping.is_set():
                    if self._read(sub) or not self.ready.is_set():
                        self.ready.set()
                        try:
                            notify.send_string(self.stream + SUFFIX, zmq.NOBLOCK)
                        except zmq.Again:
                            pass  # the loop is behind on notices: it reads the buffer anyway
        except Exception:
            log.exception("%s: packet feed stopped", self.stream)
        finally:
            self.ready.set()
            notify.close()

    def _read(self, sub: PacketSubscriber) -> int:
        """Wait for packets, then take every one there now; how many were kept."""
        try:
            packet: Packet | None = sub.recv(timeout=0.25)
        except Timeout:
            return 0
        kept = 0
        while packet is not None:
            try:
                data = packet.bytes()
            except FrameOverwritten:  # lapped in the ring before it was copied: a gap
                self._lost += packet.skipped + 1
            else:
                entry = Entry(packet.seq, 0, packet.size, packet.keyframe, packet.corrupt,
                              packet.pts, packet.dts, packet.duration, packet.timestamp_ns)
                self.buffer.append(packet.token, packet.generation, packet.codec, entry, data,
                                   packet.skipped + self._lost)
                self._lost = 0
                kept += 1
            packet = sub.try_recv()
        return kept

    def stop(self) -> None:
        self._stopping.set()
