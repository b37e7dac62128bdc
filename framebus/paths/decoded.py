"""The network path for a reader that decodes for itself (``Subscriber(name, codec="packets")``):
the stream's compressed packets through the relay of the producer's host, decoded here.

A 1080p25 H.264 camera costs the link about 4 Mbit/s of packets where its raw pixels cost
1.2 Gbit/s, and the decode costs this reader's CPU, not the producer's host's. Every packet
must be decoded (each refers to those before it), so a thread reads and decodes them all as
they come. In mode "latest" it keeps the newest picture and the caller gets that, as on any
path; in mode "all" it keeps up to ALL_HELD pictures in order for a caller that falls
behind, and beyond them lets the oldest go, counted in ``dropped`` (each is a whole frame
of pixels, 6 MB at 1080p: a queue without a bound would be one of gigabytes). Pictures are
converted to the pixel stream's own format and size, so that a frame looks the same
whichever path brought it. After packets were lost (a reader too slow for the
relay's buffer) the decoder waits for the next key frame rather than show broken pictures.
"""

from __future__ import annotations

import collections
import logging
import os
import threading
import time
from typing import ClassVar, Literal

from .. import pixfmt
from ..frame import Frame
from ..protocol.broker import StreamInfo
from ..support.heap import keep_frames
from .base import PathContext

log = logging.getLogger("framebus.subscriber")

#: Decoded pictures mode "all" holds for its caller; "latest" holds one.
ALL_HELD = 8


class _Figures:
    """The packet reader's counts (the Subscriber's own count frames)."""

    received = dropped = rejected = 0


class DecodedPath:
    """Frames of a stream on another host, decoded here from its packets."""

    kind: ClassVar[Literal["tcp"]] = "tcp"

    def __init__(self, ctx: PathContext, info: StreamInfo) -> None:
        if not info.relay:
            raise ValueError(f"{ctx.request.name}: no relay serves host {info.host}")
        self._ctx, self._name = ctx, ctx.request.name
        self._fmt = info.fmt if info.fmt in pixfmt.FORMATS else "bgr24"
        self._size = pixfmt.picture_size(self._fmt, info.shape) if info.fmt == self._fmt \
            else None
        keep_frames(info.shape, info.dtype)  # each decoded frame reuses the last one's memory
        self._fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self._ready = threading.Condition()
        held = ALL_HELD if ctx.request.mode == "all" else 1
        self._held: collections.deque[Frame] = collections.deque(maxlen=held)
        self._failure: BaseException | None = None
        self.figures = _Figures()
        self.bytes = 0  # packet bytes received
        self.decoded = 0  # pictures decoded, returned or not
        self.last_message = time.monotonic()
        self._endpoint = info.relay
        self._stopping = threading.Event()
        self._thread = self._start()

    def _start(self) -> threading.Thread:
        thread = threading.Thread(target=self._run, args=(self._endpoint, self._stopping),
                                  name=f"framebus-decode-{self._name}", daemon=True)
        thread.start()
        return thread

    def update(self, info: StreamInfo) -> None:
        if info.relay and info.relay != self._endpoint:
            self._stop()
            self._endpoint, self._stopping = info.relay, threading.Event()
            self._thread = self._start()

    def receive(self, wait: float) -> Frame | None:
        deadline = time.monotonic() + wait
        with self._ready:
            while not self._held and self._failure is None:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._ready.wait(left)
            frame = self._held.popleft() if self._held else None
            failure, self._failure = self._failure, None
        if failure is not None:
            raise failure
        if frame is None or not self.pending():
            try:
                os.eventfd_read(self._fd)
            except BlockingIOError:
                pass
        if frame is None:
            return None
        counts = self._ctx.counts
        counts.seen(frame.desc.token, frame.desc.seq)
        frame.skipped = counts.returned()
        return frame

    def fileno(self) -> int | None:
        return self._fd

    def pending(self) -> bool:
        return bool(self._held) or self._failure is not None

    def abandon(self) -> None:
        pass  # nothing is outstanding: the thread keeps decoding what comes

    def retire(self, token: bytes) -> None:
        pass  # the thread follows the packets' own rings

    # -- the decoding thread --------------------------------------------------------

    def _run(self, endpoint: str, stopping: threading.Event) -> None:
        from ..remote.decoding import Decoder  # here: `import framebus` loads no PyAV
        from ..remote.packet_reader import RemotePackets  # (and this imports paths/tcp.py)

        try:
            packets = RemotePackets(self._ctx.context, self._name, endpoint, preroll=0.0,
                                    latest=False)
        except BaseException as exc:
            self._fail(exc)
            return
        try:
            decoder = Decoder(self._name, self._fmt, self._size)
            while not stopping.is_set():
                packet = packets.take(self.figures)
                if packet is None:
                    packets.wait(0.1)
                    continue
                self.last_message = time.monotonic()
                self.bytes = packets.bytes
                for frame in decoder.decode(packet):
                    self._keep(frame)
        except Exception as exc:  # AccessDenied, a broken decoder: the caller hears of it
            self._fail(exc)
        finally:
            packets.close()

    def _keep(self, frame: Frame) -> None:
        with self._ready:  # one let go untaken is a gap receive() counts by seq
            self._held.append(frame)
            self.decoded += 1
            self._ready.notify_all()
        os.eventfd_write(self._fd, 1)

    def _fail(self, exc: BaseException) -> None:
        log.error("%s: decoding stopped: %s", self._name, exc)
        with self._ready:
            self._failure = exc
            self._ready.notify_all()
        os.eventfd_write(self._fd, 1)

    def _stop(self) -> None:
        self._stopping.set()
        self._thread.join(2)

    def close(self) -> None:
        self._stop()
        fd, self._fd = self._fd, -1
        if fd >= 0:
            os.close(fd)
