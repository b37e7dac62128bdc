"""Recording many packet streams in one process: one thread over all their subscribers.

A site's recorder records every camera; a process per camera pays an interpreter, a
ZeroMQ context and a wake-up per packet per camera. Here one thread serves them all, in
ticks: each tick takes every packet every stream's ring holds by then, and the thread
sleeps between ticks. A recorder needs no latency, and the packet ring holds seconds, so
waking once a tick instead of once a packet costs nothing but saves most of the CPU.

Each stream is recorded as ``framebus record`` records one: its own Remuxer (files,
segments, a new file on new codec parameters or a restarted producer). A stream whose
recording fails (its disk is full, its codec cannot be copied) is said, and stops alone.
Names may be patterns (``cam*``): streams of packets the broker lists are matched as they
appear. The output pattern names each stream's files with ``{stream}``.
"""

from __future__ import annotations

import fnmatch
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import av
import zmq

from ..discovery import BrokerClient
from ..errors import FramebusError, FrameOverwritten
from ..listing import is_pattern, validate_pattern
from ..names import validate_stream_name
from ..packets import PacketSubscriber
from .remux import Remuxer, SegmentFile
from .template import UnsupportedCodec

log = logging.getLogger("framebus.record")

STREAM = "{stream}"
#: Seconds between two passes over the rings (the thread sleeps in between).
TICK = 0.1
#: Seconds between two looks at the broker's list, for streams a pattern matches.
DISCOVER_EVERY = 2.0
#: How often each subscriber asks the broker whether its ring moved (descriptors say so
#: too): 32 streams asking every 0.5 s would be 64 requests a second for nothing.
LOOKUP_EVERY = 3.0

OnFile = Callable[[str, SegmentFile, str], None]


def check_names(names: list[str], out: str) -> None:
    """ValueError with the reason, for a bad name or pattern, or an output pattern that
    would mix several streams' files."""
    for name in names:
        if is_pattern(name):
            validate_pattern(name)
        else:
            validate_stream_name(name)
    if (len(names) > 1 or any(map(is_pattern, names))) and STREAM not in out:
        raise ValueError(f"{out}: recording several streams, the output pattern must name "
                         f"each stream's files with {STREAM} (e.g. {STREAM}/%Y%m%d-%H%M%S.mp4)")


@dataclass
class Recording:
    """One stream's recording: its subscriber, its remuxer, what it lost."""

    name: str
    sub: PacketSubscriber
    remuxer: Remuxer
    overwritten: int = 0  # taken, but lapped before they were copied
    failed: str | None = None

    @property
    def lost(self) -> int:
        """Packets the producer published that this recording does not have: lapped in the
        ring before they were read, or while they were copied."""
        return self.sub.dropped + self.overwritten

    def pump(self) -> int:
        """Copy every packet the ring holds now; how many."""
        n = 0
        while (packet := self.sub.try_recv()) is not None:
            try:
                data = packet.bytes()
            except FrameOverwritten:
                self.overwritten += 1
                log.warning("%s: packet %d overwritten before it was copied", self.name,
                            packet.seq)
                continue
            self.remuxer.add(data, packet, packet.codec, wall=packet.timestamp_ns / 1e9)
            n += 1
        return n

    def close(self) -> None:
        try:
            self.remuxer.close()
        finally:
            self.sub.close()


@dataclass
class Recordings:
    """The recordings of *names* (names or patterns) into *out* (``{stream}`` in it)."""

    names: list[str]
    out: str
    segment: float | None = None
    preroll: float = 0.0
    broker: str | None = None
    on_file: OnFile | None = None
    streams: dict[str, Recording] = field(default_factory=dict)
    _context: zmq.Context = field(default_factory=zmq.Context)
    _next_discovery: float = 0.0

    def discover(self) -> None:
        """Start recording streams that are named, or that a pattern matches now."""
        fixed = [n for n in self.names if not is_pattern(n)]
        for name in fixed:
            self._add(name)
        patterns = [n for n in self.names if is_pattern(n)]
        if not patterns or time.monotonic() < self._next_discovery:
            return
        self._next_discovery = time.monotonic() + DISCOVER_EVERY
        try:
            with BrokerClient(self.broker, context=self._context, timeout=1.0) as client:
                listed = client.streams(kind="packets")
        except FramebusError as exc:
            log.warning("cannot list the broker's streams: %s", exc)
            return
        for info in listed:
            if info.alive and any(fnmatch.fnmatchcase(info.name, p) for p in patterns):
                self._add(info.name)

    def _add(self, name: str) -> None:
        if name in self.streams:
            return
        on_file = self.on_file

        def said(f: SegmentFile, reason: str) -> None:
            if on_file is not None:
                on_file(name, f, reason)

        remuxer = Remuxer(self.out.replace(STREAM, name), self.segment, on_file=said,
                          make_dirs=True)
        sub = PacketSubscriber(name, broker=self.broker, preroll=self.preroll,
                               context=self._context, lookup_every=LOOKUP_EVERY)
        self.streams[name] = Recording(name, sub, remuxer)
        log.info("%s: recording from packets into %s", name, remuxer.pattern)

    def tick(self) -> int:
        """One pass over every stream; the packets copied."""
        self.discover()
        n = 0
        for rec in self.streams.values():
            if rec.failed is None:
                try:
                    n += rec.pump()
                except (UnsupportedCodec, OSError, av.FFmpegError) as exc:
                    self._fail(rec, exc)
        return n

    def _fail(self, rec: Recording, exc: BaseException) -> None:
        rec.failed = str(exc)
        log.error("%s: recording stopped: %s", rec.name, exc)
        try:
            rec.close()
        except Exception as close_exc:  # the file may be as broken as what broke it
            log.error("%s: closing its file: %s", rec.name, close_exc)

    def run(self, stop: Callable[[], str | None], duration: float | None = None) -> str:
        """Record until *stop* gives a reason or *duration* seconds have passed."""
        end = None if duration is None else time.monotonic() + duration
        while True:
            reason = stop()
            if reason is not None:
                return reason
            if end is not None and time.monotonic() >= end:
                return f"{duration:g} s recorded"
            started = time.monotonic()
            self.tick()
            time.sleep(max(0.0, TICK - (time.monotonic() - started)))

    @property
    def packets(self) -> int:
        return sum(r.remuxer.packets for r in self.streams.values())

    def close(self) -> None:
        """Finish every file, close every subscriber; safe to call twice."""
        for rec in self.streams.values():
            if rec.failed is None:
                try:
                    rec.close()
                except Exception as exc:
                    log.error("%s: closing its file: %s", rec.name, exc)
        self._context.destroy(linger=0)
