"""Feeds: one reader per stream for all its browser viewers, running only while watched.

A feed is made by the first viewer of its stream and stopped when the last one leaves:
one PacketSubscriber and one fMP4 muxer per stream however many viewers (no per-viewer
muxing, no transcoding); one pixel Subscriber and one JPEG encoder per MJPEG stream and
rate. A viewer gets a Viewer queue (viewers.py) that the feed fills without waiting.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any

import zmq

from .. import aio
from ..errors import FramebusError
from ..packets import Packet, PacketSubscriber
from .aiopackets import AsyncPackets
from .fmp4 import Muxer, Unplayable
from .pictures import jpeg_of_frame
from .viewers import RESTARTED, Viewer

log = logging.getLogger(__name__)

#: A new live feed starts from the newest key frame at most this old in the packet ring,
#: so that the first picture comes at once rather than at the next key frame.
PREROLL = 10.0
#: A GOP kept for joining viewers up to this size; a longer one is not kept (they wait).
GOP_BYTES = 32 * 2**20
#: A packet subscriber's broker lookups run on the event loop: a broker that is away
#: costs the loop this much, every half second, not the default half second.
LOOKUP_TIMEOUT = 0.05
#: How long a joining viewer waits for the feed's first key frame or picture.
READY_WITHIN = 10.0
#: WebSocket close codes: a feed that failed (a reason goes with it); the server stopping.
FAILED = 4500
GOING_AWAY = 1001


class FeedFailed(FramebusError):
    """A feed could not start: its reason is what the browser is told."""


class Feed:
    """A stream's shared reader. Subclasses' _run() fill ``self.viewers`` until done."""

    def __init__(self, name: str, *, broker: str | None, context: zmq.Context,
                 executor: Executor, on_end: Callable[[Feed], None]) -> None:
        self.name = name
        self.broker = broker
        self.context = context
        self.executor = executor
        self.viewers: set[Viewer] = set()
        self.failure: str | None = None
        self._on_end = on_end
        self._ready = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        #: What the viewers' sockets are closed with when the feed ends.
        self._end = (GOING_AWAY, "the server stopped serving the stream")

    async def join(self) -> Viewer:
        """A new viewer, seeded, once the feed is ready; FeedFailed if it cannot be."""
        viewer = Viewer()
        self.viewers.add(viewer)  # before waiting: the feed is not stopped meanwhile
        if self._task is None:
            self._task = asyncio.create_task(self._main(), name=f"feed {self.name}")
        try:
            await asyncio.wait_for(self._ready.wait(), READY_WITHIN)
        except asyncio.TimeoutError:  # TimeoutError from 3.11 on
            self.leave(viewer)
            raise FeedFailed(self.failure or self._not_ready()) from None
        if self.failure is not None:
            self.leave(viewer)
            raise FeedFailed(self.failure)
        self._seed(viewer)
        return viewer

    def leave(self, viewer: Viewer) -> None:
        self.viewers.discard(viewer)
        if not self.viewers and self._task is not None:
            self._task.cancel()  # the last viewer gone: nothing left running

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()

    async def wait_stopped(self) -> None:
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)

    async def _main(self) -> None:
        try:
            await self._run()
        except asyncio.CancelledError:
            pass
        except Exception as exc:  # said to the viewers and logged, never left unseen
            log.exception("%s: feed failed", self.name)
            self._fail(f"{self.name}: {exc}")
        finally:
            self._ready.set()
            for viewer in self.viewers:
                viewer.finish(*self._end)
            self._on_end(self)

    def _fail(self, reason: str) -> None:
        self.failure = reason
        self._end = (FAILED, reason)
        self._ready.set()

    def _restarted(self, reason: str) -> None:
        self._end = (RESTARTED, reason)

    def _not_ready(self) -> str:
        return f"nothing from {self.name} within {READY_WITHIN:g} s"

    def _seed(self, viewer: Viewer) -> None:
        viewer.seed([], key=False)

    async def _run(self) -> None:
        raise NotImplementedError


class LiveFeed(Feed):
    """A stream's packets as fMP4: a header and init segment, then a fragment a packet."""

    def __init__(self, name: str, **kwargs: Any) -> None:
        super().__init__(name, **kwargs)
        self.header: dict[str, Any] = {}
        self.muxer: Muxer | None = None
        self._token: bytes | None = None
        self._gop: list[bytes] = []  # fragments since the last key frame, for joiners
        self._gop_bytes = 0

    def _seed(self, viewer: Viewer) -> None:
        assert self.muxer is not None
        viewer.seed([self.muxer.init, *self._gop], key=bool(self._gop))

    async def _run(self) -> None:
        sub = PacketSubscriber(self.name, broker=self.broker, preroll=PREROLL,
                               context=self.context, lookup_timeout=LOOKUP_TIMEOUT)
        packets = AsyncPackets(sub)
        try:
            while True:
                packet = sub.try_recv()
                if packet is None:
                    if self.muxer is not None:
                        self._ready.set()  # caught up to live: joiners get the newest GOP
                    packet = await packets.recv()
                if not self._add(packet):
                    return
        finally:
            sub.close()

    def _add(self, packet: Packet) -> bool:
        """Mux one packet and offer it; False when the feed must end (new ring)."""
        if self._token is not None and packet.token != self._token:
            self._restarted(f"{self.name} restarted or changed its codec")
            return False
        if self.muxer is None:
            if not packet.keyframe:
                return True
            try:
                self.muxer = Muxer(packet.codec, packet.data)
            except Unplayable as exc:
                self._fail(str(exc))
                return False
            self._token = packet.token
            codec = packet.codec
            self.header = {"mime": self.muxer.mime, "codec": codec.name,
                           "width": codec.width, "height": codec.height}
        chunk = self.muxer.fragment(packet.data, pts=packet.pts, dts=packet.dts,
                                    duration=packet.duration, keyframe=packet.keyframe)
        if packet.skipped or not packet.valid():  # lost, or lapped while copied
            self._lost()
            if not packet.valid():
                return True
        self._keep(chunk, packet.keyframe)
        for viewer in self.viewers:
            viewer.offer(chunk, packet.keyframe)
        return True

    def _keep(self, chunk: bytes, key: bool) -> None:
        if key:
            self._gop, self._gop_bytes = [], 0
        elif not self._gop:
            return
        self._gop_bytes += len(chunk)
        if self._gop_bytes <= GOP_BYTES:
            self._gop.append(chunk)
        else:
            self._gop = []

    def _lost(self) -> None:
        self._gop, self._gop_bytes = [], 0
        for viewer in self.viewers:
            viewer.skip_to_key()

    def _not_ready(self) -> str:
        return f"no key frame from {self.name} within {READY_WITHIN:g} s"


class JpegFeed(Feed):
    """A stream's pixels as JPEGs, at most *fps* a second, for MJPEG viewers."""

    def __init__(self, name: str, *, fps: float, quality: int, **kwargs: Any) -> None:
        super().__init__(name, **kwargs)
        self.fps = fps
        self.quality = quality

    def _seed(self, viewer: Viewer) -> None:
        viewer.limit = 2  # a JPEG is a key frame: a slow viewer gets the newest, not all
        viewer.seed([], key=True)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        async with aio.Subscriber(self.name, broker=self.broker, context=self.context) as sub:
            self._ready.set()
            due = 0.0
            while True:
                frame = await sub.recv()
                if loop.time() < due:
                    continue
                due = max(due + 1 / self.fps, loop.time())  # the rate, not its drift
                jpeg = await loop.run_in_executor(self.executor, jpeg_of_frame, frame,
                                                  self.quality)
                if jpeg is None:
                    continue  # lapped while encoded: the next frame instead
                for viewer in self.viewers:
                    viewer.offer(jpeg, True)
