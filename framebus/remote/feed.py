"""A relay's feed: one stream read from shared memory, its newest frame kept ready.

The relay's loop answers credits; each wanted stream has a Feed thread that reads the
stream like any local subscriber and keeps its newest frame, in its ring slot (raw frames
are sent from there: framebus/remote/sending.py), with the JPEGs its subscribers want
made off the loop, so that the loop never waits on a ring nor on a JPEG encoder.
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
from ..support.heap import keep_frames

log = logging.getLogger("framebus.remote.relay")

#: Most frames a second made into JPEGs for subscribers that are not waiting: a producer
#: publishing flat out would otherwise cost an encoding per frame for frames nobody takes.
COPY_RATE = 120.0
FRESH = 1 / COPY_RATE  # a frame encoded this recently is as good as the newest
#: The inproc socket on which feeds tell the relay's loop of a new frame.
NOTIFY = "inproc://framebus-relay-feeds"


@dataclass
class Newest:
    """The newest frame of a stream, in its ring slot, and its JPEGs by setting."""

    frame: Frame  # in the slot: valid() tells whether the slot still holds it
    packed: bytes
    copied: float = field(default_factory=time.monotonic)
    #: JPEGs by setting, made from a whole copy of the frame; "raw" is never here.
    payloads: dict = field(default_factory=dict)
    pixels: np.ndarray | None = None  # a whole copy, once one subscriber needed it

    def copy_out(self) -> np.ndarray:
        """A whole copy of the frame, made once and shared (FrameOverwritten if lapped)."""
        if self.pixels is None:
            self.pixels = self.frame.copy()
        return self.pixels

    @property
    def descriptor(self) -> Descriptor:
        return self.frame.desc

    def jpeg(self, setting: tuple[str, int], scratch: np.ndarray | None = None) -> bytes:
        """The JPEG for *setting*, made on first use and kept for the others: from a whole
        copy of the slot (into *scratch* if given). FrameOverwritten if it was lapped."""
        if setting not in self.payloads:
            pixels = self.frame.copy(scratch)
            self.payloads[setting] = encode_jpeg(pixels, self.descriptor.fmt, setting[1])
        return self.payloads[setting]


def encode_jpeg(pixels: np.ndarray, fmt: str, quality: int) -> bytes:
    """The frame as a JPEG at *quality*, 4:2:0 as OpenCV makes it: libjpeg-turbo through
    simplejpeg gives the same size and PSNR in 10-40% less time at 1080p (9.8 against
    11.0-17 ms here), and the relay encodes every frame a JPEG subscriber takes."""
    import simplejpeg  # here, not at the top: `import framebus` loads no JPEG codec

    if fmt == "gray":  # simplejpeg takes (h, w, 1) for grey
        image, colorspace = pixels[..., np.newaxis] if pixels.ndim == 2 else pixels, "GRAY"
    else:
        image, colorspace = pixfmt.to_bgr(pixels, fmt), "BGR"
    try:
        return simplejpeg.encode_jpeg(np.ascontiguousarray(image), quality=quality,
                                      colorspace=colorspace, colorsubsampling="420")
    except ValueError as exc:  # a ring of any geometry may claim to be gray, say
        raise ValueError(f"JPEG encoding of a {fmt} {pixels.shape} {pixels.dtype} frame "
                         f"failed: {exc}") from None


class Feed(threading.Thread):
    """Reads one stream from shared memory and keeps its newest frame for the relay.

    Every frame becomes the newest (raw frames cost nothing here: they are sent from
    the slot). While JPEG subscribers are active it also makes the JPEGs they asked
    for, here, off the relay's loop, so that a subscriber's next credit finds one
    ready: for every frame while one waits with a credit, at most COPY_RATE a second
    otherwise. The loop is told of a new frame while a subscriber waits.
    """

    def __init__(self, name: str, broker: str, context: zmq.Context) -> None:
        super().__init__(name=f"framebus-relay-{name}", daemon=True)
        self.stream = name
        self.broker = broker
        self.newest: Newest | None = None  # the last frame kept
        self.latest: tuple[bytes, int] | None = None  # (token, seq) of the last frame published
        self.waiting = threading.Event()  # a subscriber holds a credit
        self.settings: frozenset[tuple[str, int]] = frozenset()  # what active ones want
        self.idle_since: float | None = None  # when its last subscriber went away
        self._context = context
        self._stopping = threading.Event()
        self._failed: set[tuple[str, int]] = set()  # settings its frames cannot be made in
        self._scratch: np.ndarray | None = None  # the copy JPEGs are made from, reused

    @property
    def fresh(self) -> Newest | None:
        """The newest frame kept if it is the stream's newest or was kept a moment ago."""
        newest = self.newest
        if newest is None:
            return None
        d = newest.descriptor
        if (d.token, d.seq) == self.latest or time.monotonic() - newest.copied < FRESH:
            return newest
        return None

    def _due(self) -> bool:
        """Whether this frame is kept: always for raw subscribers (it costs nothing), for
        JPEG ones only while one waits, or COPY_RATE a second."""
        if self.waiting.is_set() or not self._jpegs():
            return True
        newest = self.newest
        return newest is None or time.monotonic() - newest.copied >= 1 / COPY_RATE

    def _jpegs(self) -> set[tuple[str, int]]:
        return {s for s in self.settings if s[0] == "jpeg"} - self._failed

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
                    keep_frames(frame.shape, frame.dtype.str)  # copies reuse freed memory
                    if self._due() and self._keep(frame) and self.waiting.is_set():
                        try:
                            notify.send_string(self.stream, zmq.NOBLOCK)
                        except zmq.Again:
                            pass  # the relay is behind on notices: it sees the newest anyway
        except Exception:
            log.exception("%s: feed stopped", self.stream)
        finally:
            notify.close()

    def _keep(self, frame: Frame) -> bool:
        newest = Newest(frame, frame.desc.pack())
        jpegs = self._jpegs()
        if jpegs and (self._scratch is None or self._scratch.shape != frame.shape
                      or self._scratch.dtype != frame.dtype):
            self._scratch = np.empty(frame.shape, frame.dtype)
        for setting in jpegs:
            try:
                newest.jpeg(setting, self._scratch)
            except FrameOverwritten:
                return False  # lapped while copying: the next frame will do
            except ValueError as exc:
                self._failed.add(setting)  # said once: every frame of the ring would fail
                log.error("%s: %s", self.stream, exc)
        if jpegs:
            # Fresh from when its JPEGs are ready: counted from before an encode longer than
            # FRESH (a 1080p one here, beside a producer flat out), no JPEG was ever fresh.
            newest.copied = time.monotonic()
        self.newest = newest
        return True

    def stop(self) -> None:
        self._stopping.set()
