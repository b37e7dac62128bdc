"""The decoder worker: one source decoded into one stream, for as long as it runs.

    spec = DecodeSpec.convert({"source": "rtsp://cam/stream", "name": "cam1", "fps": 10})
    worker = DecodeWorker(spec)
    worker.run()            # until the source ends (files) or stop is set

The spec (``framebus/spec.py``) is what ``framebus decode`` and a site file's stream
say, field for field.

Files play at their own timing unless ``fast``; ``loop`` restarts them at the end
with timestamps that keep counting. A live source is read as it comes; when it
drops, the worker reconnects with capped exponential backoff for as long as it
runs, under the same stream name, so subscribers only see a gap. A change of
picture size starts a new ring generation. The Publisher is created at the first
frame, since only then is the geometry known.
"""

from __future__ import annotations

import logging
import threading
import time
from fractions import Fraction
from typing import NamedTuple

import av

from ..errors import SourceError
from ..publisher import Publisher
from ..spec import DecodeSpec
from ..support.backoff import Backoff
from ..support.rates import RateMeter
from .convert import Converter
from .packets import DECODE_MODES, PacketSide
from .source import ContainerInput, Input, Source, open_source

log = logging.getLogger(__name__)

#: A live frame later than this behind the pace the source set is not converted
#: but dropped, so a decoder that fell behind catches up instead of lagging for ever.
LATE = 0.1
#: A live source that drops is reconnected after BACKOFF_FIRST, doubling up to
#: BACKOFF_CAP while it keeps failing; one that stayed up STABLE_AFTER starts over.
BACKOFF_FIRST = 0.5
BACKOFF_CAP = 10.0
STABLE_AFTER = 10.0


class Figures:
    """The worker's counters; the Publisher's heartbeat carries them to the broker."""

    def __init__(self) -> None:
        self.decoding = RateMeter()  # every decoded frame
        self.dropped = 0  # decoded but not published: late, or broken by a corrupt packet
        self.decode_errors = 0
        self.reconnects = 0

    @property
    def decoded(self) -> int:
        return self.decoding.total

    def tick(self) -> None:
        self.decoding.add()

    def idle(self) -> None:
        """The source went away: no decode rate until it is back."""
        self.decoding.reset()

    def as_dict(self, current: Input | None = None) -> dict:
        """The figures, counting those of the input being read too."""
        errors, broken = (current.errors, current.broken) if current else (0, 0)
        return {"decoded": self.decoded, "decode_fps": round(self.decoding.rate, 2),
                "dropped": self.dropped + broken, "decode_errors": self.decode_errors + errors,
                "reconnects": self.reconnects}

    def add_input(self, finished: Input) -> None:
        """Fold in the counts of an input that is being closed."""
        self.decode_errors += finished.errors
        self.dropped += finished.broken


class DecodeWorker:
    """Decodes *spec.source* into stream *spec.name* until the source ends or stop() is
    called; registers with the broker at *broker* (default: $FRAMEBUS_BROKER).

    Raises SourceError for a SOURCE it cannot tell the kind of.
    """

    def __init__(self, spec: DecodeSpec, broker: str | None = None) -> None:
        self.spec = spec
        self.broker = broker
        self.source = Source.parse(spec.source)
        self.converter = Converter(spec.format, spec.size)
        self.figures = Figures()
        self._backoff = Backoff(BACKOFF_FIRST, BACKOFF_CAP, stable_after=STABLE_AFTER)
        self.publisher: Publisher | None = None
        self._input: Input | None = None
        self._stop = threading.Event()
        self._clock = _Pacer()
        paced = not (self.source.live or spec.fast)
        self.packets = PacketSide(spec.name, broker, _Pacer() if paced else None, self._stop)

    def stop(self) -> None:
        self._stop.set()

    def run(self) -> int:
        """Decode until done; returns an exit status (0: the source ended, or stop was asked).

        A source that cannot be opened the first time raises SourceError, so that
        ``framebus decode`` fails at once with a clear message; later failures of a
        live source are retried for as long as the worker runs.
        """
        try:
            self._input = self._open()
            status = self._run_live() if self.source.live else self._run_file()
        finally:
            self._close_input()
            if self.publisher is not None:
                self.publisher.close()
            self.packets.close()
        figures = self.figures.as_dict()
        if figures["decode_errors"]:
            log.warning("%s: %d corrupt packets; %d frames skipped for them or for being late",
                        self.spec.name, figures["decode_errors"], figures["dropped"])
        log.info("%s: stopped; %s", self.spec.name, figures)
        return status

    # -- files ---------------------------------------------------------------------

    def _run_file(self) -> int:
        """Play the file (at its timing unless fast), again and again with loop."""
        offset = 0  # added to pts on each loop, so timestamps keep increasing
        while not self._stop.is_set():
            try:
                end = _later(self._pump(offset), self.packets.end)
            except SourceError as exc:
                log.error("%s: %s", self.spec.name, exc)
                return 1
            if not self.spec.loop or self._stop.is_set():
                return 0
            if end is None:
                log.error("%s: %s has no frames to loop over", self.spec.name, self.source)
                return 1
            offset = end
            assert isinstance(self._input, ContainerInput)
            self._input.rewind()
        return 0

    # -- live sources ----------------------------------------------------------------

    def _run_live(self) -> int:
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                self._pump(0)
                log.warning("%s: %s ended", self.spec.name, self.source)
            except SourceError as exc:
                log.warning("%s: %s", self.spec.name, exc)
            self._close_input()
            self.figures.idle()
            self._backoff.stable(time.monotonic() - started)  # a good long run starts over
            while not self._stop.is_set():
                delay = self._backoff.next()
                log.info("%s: reconnecting in %.1f s", self.spec.name, delay)
                if self._stop.wait(delay):
                    break
                try:
                    self._input = self._open()
                except SourceError as exc:
                    log.warning("%s: %s", self.spec.name, exc)
                    continue
                self.figures.reconnects += 1
                log.info("%s: reconnected to %s", self.spec.name, self.source)
                break
        return 0

    # -- the frame path ----------------------------------------------------------------

    def _pump(self, pts_offset: int) -> int | None:
        """Decode and publish frames until the input ends; the pts just past the last frame."""
        assert self._input is not None
        self._clock.restart()
        self._attach_packets(pts_offset)
        end = last = None
        thin = _Thinner(self.spec.fps)
        for frame in self._input.frames():
            if self._stop.is_set():
                break
            self.figures.tick()
            pts = None if frame.pts is None else frame.pts + pts_offset
            t = _seconds(pts, frame.time_base)
            if pts is not None:
                end = pts + (pts - last if last is not None and pts > last else _duration(frame))
                last = pts
            if not thin.take(t):
                continue
            if self.source.live:
                if self._clock.late(t) > LATE:
                    self.figures.dropped += 1
                    continue
            elif not self.spec.fast:
                self._clock.wait_until(t, self._stop)
            self._publish(frame, pts)
        return end

    def _attach_packets(self, pts_offset: int) -> None:
        """Packets of a container flow to the packet stream; in demand mode, the pixel
        stream is made now (it has to exist to be subscribed to) and decides the gate."""
        inp = self._input
        if not isinstance(inp, ContainerInput):
            return
        self.packets.offset = pts_offset
        if self.packets._pacer is not None:
            self.packets._pacer.restart()
        stream = inp.stream
        if self.spec.decode == "demand" and stream.codec_context.width:
            self._publisher_for(_Picture(stream.codec_context.width,
                                         stream.codec_context.height, inp.time_base))

        def on_packet(packet: av.Packet) -> None:
            self.packets.publish(packet, stream)
            if self.publisher is not None:
                inp.gate.wanted = inp.gate.mode != "demand" or self.publisher.subscribers > 0
                self.publisher.figures["decoding"] = int(inp.gate.decoding)

        inp.on_packet = on_packet

    def _publish(self, frame: av.VideoFrame, pts: int | None) -> None:
        decoded_ns = time.time_ns()
        pub = self._publisher_for(frame)
        with pub.frame(pts=pts, timestamp_ns=decoded_ns) as slot:
            self.converter.into(frame, slot)
        pub.figures.update(self.figures.as_dict(self._input))

    def _publisher_for(self, frame: av.VideoFrame | _Picture) -> Publisher:
        shape = self.converter.shape_for(frame)  # type: ignore[arg-type]  # width, height
        pub = self.publisher
        if pub is None:
            pub = self.publisher = Publisher(
                self.spec.name, shape=shape, fmt=self.spec.format, slots=self.spec.slots,
                broker=self.broker, time_base=frame.time_base)
            log.info("%s: publishing %s as %dx%d %s", self.spec.name, self.source,
                     *self.converter.output_size(frame), self.spec.format)  # type: ignore[arg-type]
        elif pub.shape != shape:
            log.info("%s: picture size changed to %dx%d", self.spec.name, frame.width,
                     frame.height)
            pub.reconfigure(shape, fmt=self.spec.format)
        pub.time_base = frame.time_base
        pub.figures["decode_mode"] = DECODE_MODES.index(self.spec.decode)
        return pub

    # -- plumbing --------------------------------------------------------------------

    def _open(self) -> Input:
        return open_source(self.source, self.spec)

    def _close_input(self) -> None:
        if self._input is not None:
            self.figures.add_input(self._input)
            self._input.close()
            self._input = None


class _Pacer:
    """Maps media time to the wall clock: when a frame is due, and how late one is."""

    def __init__(self) -> None:
        self._origin: float | None = None  # wall time of media time 0

    def restart(self) -> None:
        self._origin = None

    def _anchor(self, t: float) -> tuple[float, float]:
        """Now, and the wall time of media time 0 (set by the first frame)."""
        now = time.monotonic()
        if self._origin is None:
            self._origin = now - t
        return now, self._origin

    def wait_until(self, t: float | None, stop: threading.Event) -> None:
        if t is None:
            return
        now, origin = self._anchor(t)
        delay = origin + t - now
        if delay > 1.0 + LATE:
            self._origin = now - t  # a jump forward in the file's timestamps: follow it
        elif delay > 0:
            stop.wait(delay)
        elif delay < -1.0:
            self._origin = now - t  # fell far behind: don't rush to catch up

    def late(self, t: float | None) -> float:
        """How far behind its pace a live frame arrives (seconds; never below 0)."""
        if t is None:
            return 0.0
        now, origin = self._anchor(t)
        lateness = now - (origin + t)
        if lateness < 0:
            self._origin = now - t  # earlier than ever: the source set a faster pace
        return max(0.0, lateness)


class _Thinner:
    """Lets through at most *fps* frames a second of media time (None: all of them)."""

    def __init__(self, fps: float | None) -> None:
        self._period = 1.0 / fps if fps else 0.0
        self._next: float | None = None

    def take(self, t: float | None) -> bool:
        if not self._period or t is None:
            return True
        if self._next is not None and self._next - 10 * self._period <= t < self._next - 1e-6:
            return False  # too soon after the last frame let through
        # Keep the cadence while frames come on time; after a gap or a jump, start from t.
        on_cadence = self._next is not None and self._next - 1e-6 <= t < self._next + self._period
        start = self._next if on_cadence and self._next is not None else t
        self._next = start + self._period
        return True


class _Picture(NamedTuple):
    """What a Publisher is made from, before the first frame is decoded."""

    width: int
    height: int
    time_base: Fraction | None


def _later(a: int | None, b: int | None) -> int | None:
    return a if b is None else b if a is None else max(a, b)


def _seconds(pts: int | None, time_base: Fraction | None) -> float | None:
    return None if pts is None or time_base is None else float(pts * time_base)


def _duration(frame: av.VideoFrame) -> int:
    """A frame's duration in its time base: 1 when the container does not say."""
    return max(1, int(getattr(frame, "duration", 0) or 0))
