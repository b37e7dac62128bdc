"""The newest picture of a stream, at a low rate, for a grid of previews.

From packets where the stream has them: the newest key frame still in the packet ring,
decoded alone (one key frame a GOP at most, since a key frame already made into JPEG is
served again as it is). Otherwise from pixels: the newest frame. Each picture is taken in
a worker thread with a subscriber of its own, closed when it is taken, so nothing runs
between requests; requests for the same picture at once share one taking, and a picture
(or a failure) is served again for FRESH seconds.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from concurrent.futures import Executor
from typing import NamedTuple

import zmq

from ..errors import FramebusError, FrameOverwritten, Timeout
from ..packets import CodecInfo, PacketSubscriber
from ..subscriber import Subscriber
from .pictures import jpeg_of_frame, jpeg_of_key_frame

#: Seconds a picture is served again before a new one is taken.
FRESH = 1.0
#: How long a taking waits for a key frame or a frame to come.
WAIT = 2.0
#: From the packet ring: key frames at most this old.
PREROLL = 10.0
#: Pictures kept (name and width each).
KEEP = 256


class PreviewFailed(FramebusError):
    """No picture could be taken: the reason is what the browser is told (503)."""


class Picture(NamedTuple):
    at: float
    source: tuple[bytes, int] | None  # (ring token, seq) of its key frame: the same, no decode
    jpeg: bytes | None
    failure: str | None


class Previews:
    def __init__(self, broker: str | None, context: zmq.Context, executor: Executor) -> None:
        self.broker = broker
        self.context = context
        self.executor = executor
        self._pictures: OrderedDict[tuple[str, int], Picture] = OrderedDict()
        self._taking: dict[tuple[str, int], asyncio.Future[Picture]] = {}

    async def get(self, name: str, width: int, packets: bool) -> bytes:
        """The stream's picture, JPEG at most *width* wide (0: as it is)."""
        key = (name, width)
        picture = self._pictures.get(key)
        if picture is None or time.monotonic() - picture.at >= FRESH:
            taking = self._taking.get(key)
            if taking is None:
                loop = asyncio.get_running_loop()
                previous = picture.source if picture is not None else None
                taking = loop.run_in_executor(self.executor, self._take, name, width, packets,
                                              previous, picture)
                self._taking[key] = taking
                taking.add_done_callback(lambda _: self._taking.pop(key, None))
            picture = await asyncio.shield(taking)
            self._keep(key, picture)
        if picture.jpeg is None:
            raise PreviewFailed(picture.failure or f"no picture of {name}")
        return picture.jpeg

    def _keep(self, key: tuple[str, int], picture: Picture) -> None:
        self._pictures[key] = picture
        self._pictures.move_to_end(key)
        while len(self._pictures) > KEEP:
            self._pictures.popitem(last=False)

    # -- in a worker thread ----------------------------------------------------------------

    def _take(self, name: str, width: int, packets: bool, previous: tuple[bytes, int] | None,
              old: Picture | None) -> Picture:
        try:
            if packets:
                return self._from_packets(name, width, previous, old)
            return Picture(time.monotonic(), None, self._from_pixels(name, width), None)
        except (FramebusError, ValueError, OSError) as exc:  # av.FFmpegError is an OSError
            return Picture(time.monotonic(), None, None, f"no picture of {name}: {exc}")

    def _from_packets(self, name: str, width: int, previous: tuple[bytes, int] | None,
                      old: Picture | None) -> Picture:
        codec, data, source = self._newest_key(name)
        if source == previous and old is not None and old.jpeg is not None:
            return old._replace(at=time.monotonic())
        return Picture(time.monotonic(), source, jpeg_of_key_frame(codec, data, width=width),
                       None)

    def _newest_key(self, name: str) -> tuple[CodecInfo, bytes, tuple[bytes, int]]:
        """The newest whole key frame the ring has (else the next to come, within WAIT)."""
        found: tuple[CodecInfo, bytes, tuple[bytes, int]] | None = None
        with PacketSubscriber(name, broker=self.broker, preroll=PREROLL,
                              context=self.context) as sub:
            deadline = time.monotonic() + WAIT
            while True:
                packet = sub.try_recv()
                if packet is None:
                    if found is not None:
                        return found
                    packet = sub.recv(timeout=max(0.0, deadline - time.monotonic()))
                if packet.keyframe:
                    try:
                        found = (packet.codec, packet.bytes(), (packet.token, packet.seq))
                    except FrameOverwritten:
                        pass  # lapped: a newer one is in the ring

    def _from_pixels(self, name: str, width: int) -> bytes:
        with Subscriber(name, broker=self.broker, context=self.context) as sub:
            deadline = time.monotonic() + WAIT
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise Timeout(f"no whole frame within {WAIT:g} s")
                jpeg = jpeg_of_frame(sub.recv(timeout=left), width=width)
                if jpeg is not None:
                    return jpeg
