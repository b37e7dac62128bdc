"""A relay's feed: one stream read from shared memory, its newest frame kept ready.

The relay's loop answers credits; each wanted stream has a Feed thread that reads the
stream like any local subscriber and copies frames out of the ring for it, so that the
loop never waits on a ring nor on a JPEG encoder.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field

import numpy as np
import zmq

from .. import pixfmt
from ..errors import FrameOverwritten, Timeout
from ..frame import Frame
from ..protocol.descriptor import Descriptor
from ..subscriber import Subscriber

log = logging.getLogger("framebus.remote.relay")

COPY_RATE = 120.0  # most frames a second copied out for subscribers that are not waiting
FRESH = 1 / COPY_RATE  # a frame copied out this recently is as good as the newest
#: The inproc socket on which feeds tell the relay's loop of a new frame.
NOTIFY = "inproc://framebus-relay-feeds"


@dataclass
class Newest:
    """The newest frame of a stream, copied out of its ring, and its payloads by setting."""

    descriptor: Descriptor
    packed: bytes
    pixels: np.ndarray
    copied: float = field(default_factory=time.monotonic)
    payloads: dict = field(default_factory=dict)

    def payload(self, setting: tuple[str, int]):
        """The bytes to send for *setting*, made on first use and kept for the others."""
        if setting not in self.payloads:
            codec, quality = setting
            self.payloads[setting] = (memoryview(self.pixels.data).cast("B") if codec == "raw"
                                      else _jpeg(self.pixels, self.descriptor.fmt, quality))
        return self.payloads[setting]


def _jpeg(pixels: np.ndarray, fmt: str, quality: int) -> bytes:
    import cv2  # here, not at the top: `import framebus` loads no OpenCV

    image = pixels if fmt == "gray" else pixfmt.to_bgr(pixels, fmt)
    try:
        ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    except cv2.error as exc:  # a ring of any geometry may claim to be gray, say
        raise ValueError(f"JPEG encoding of a {fmt} {pixels.shape} {pixels.dtype} frame "
                         f"failed: {exc.err}") from None
    if not ok:
        raise ValueError(f"JPEG encoding of a {fmt} {pixels.shape} frame failed")
    return data.tobytes()


class Feed(threading.Thread):
    """Reads one stream from shared memory and copies frames out for the relay's subscribers.

    While subscribers are active it copies every frame out (and makes the JPEGs they
    asked for, here, off the relay's loop), so that a subscriber's next credit finds a
    fresh frame ready instead of waiting for the next one: at most COPY_RATE a second
    when nobody is waiting, since a producer publishing flat out would otherwise cost a
    copy per frame for frames nobody takes. A subscriber waiting with a credit gets the
    very next frame copied out. With no active subscriber, nothing is copied.
    """

    def __init__(self, name: str, broker: str, context: zmq.Context) -> None:
        super().__init__(name=f"framebus-relay-{name}", daemon=True)
        self.stream = name
        self.broker = broker
        self.newest: Newest | None = None  # the last frame copied out
        self.latest: tuple[bytes, int] | None = None  # (token, seq) of the last frame published
        self.waiting = threading.Event()  # a subscriber holds a credit
        self.settings: frozenset[tuple[str, int]] = frozenset()  # what active ones want
        self.idle_since: float | None = None  # when its last subscriber went away
        self._context = context
        self._stopping = threading.Event()
        self._failed: set[tuple[str, int]] = set()  # settings its frames cannot be made in

    @property
    def fresh(self) -> Newest | None:
        """The copied-out frame if it is the stream's newest or was copied a moment ago."""
        newest = self.newest
        if newest is None:
            return None
        d = newest.descriptor
        if (d.token, d.seq) == self.latest or time.monotonic() - newest.copied < FRESH:
            return newest
        return None

    def _due(self) -> bool:
        if self.waiting.is_set():
            return True
        newest = self.newest
        return bool(self.settings) and (newest is None or
                                        time.monotonic() - newest.copied >= 1 / COPY_RATE)

    def run(self) -> None:
        notify = self._context.socket(zmq.PUSH)
        notify.linger = 0
        notify.connect(NOTIFY)
        try:
            with Subscriber(self.stream, broker=self.broker, transport="shm",
                            context=self._context) as sub:
                while not self._stopping.is_set():
                    try:
                        frame = sub.recv(timeout=0.25)
                    except Timeout:
                        continue
                    self.latest = (frame.token, frame.seq)
                    if self._due() and self._copy(frame):
                        try:
                            notify.send_string(self.stream, zmq.NOBLOCK)
                        except zmq.Again:
                            pass  # the relay is behind on notices: it sees the newest anyway
        except Exception:
            log.exception("%s: feed stopped", self.stream)
        finally:
            notify.close()

    def _copy(self, frame: Frame) -> bool:
        try:
            newest = _copy_out(frame)
        except FrameOverwritten:
            return False  # lapped while copying: the next frame will do
        for setting in self.settings - self._failed:
            try:
                newest.payload(setting)
            except ValueError as exc:
                self._failed.add(setting)  # said once: every frame of the ring would fail
                log.error("%s: %s", self.stream, exc)
        self.newest = newest
        return True

    def stop(self) -> None:
        self._stopping.set()


def _copy_out(frame: Frame) -> Newest:
    """The frame's own copy (FrameOverwritten if it was lapped while copying)."""
    pixels = frame.copy()
    return Newest(frame.desc, frame.desc.pack(), pixels)
