"""framebus record: re-encode a stream to a video file with its true timing.

Usage::

    python -m framebus.clients.record NAME OUT.mp4 [--duration S] [--frames N]
        [--codec libx264] [--crf 23] [--preset veryfast] [--fps F] [--broker ADDR]
    python clients/record.py NAME OUT.mp4

Design:

- Every frame when it can keep up: the subscriber runs in mode "all". Frames
  it misses anyway (lapped in the ring, reported by ``frame.skipped``) are
  simply absent from the file: every frame keeps its own timestamp, so the
  timing stays right around a gap.
- Timestamps: the producer's pts and time_base when it gives both (the
  encoder and the file then use that time base, and pts count from the first
  recorded frame); otherwise ``timestamp_ns``, in microseconds from the first
  recorded frame. A timestamp that does not move forward (a restarted
  producer counting from 0 again) continues from the previous frame by the
  wall-clock interval, so the file's time never runs backwards.
- Pixels: yuv420p goes to the encoder as it is (its I420 planes copied into
  an av.VideoFrame); bgr24, rgb24 and gray through av.VideoFrame.from_ndarray
  and the encoder's own conversion to yuv420p. The frame is copied out of
  shared memory and ``frame.valid()`` checked afterwards: a frame the producer
  overwrote meanwhile is dropped and counted, never written torn.
- Odd sizes: yuv420p needs an even width and height. A bgr24/rgb24/gray
  stream of odd size is cropped by one pixel (the right column, the bottom
  row), said once. A yuv420p stream of odd size is malformed (framebus defines
  yuv420p as even-sized) and is refused with an error.
- Geometry change mid-recording (a new ring generation with another shape or
  pixel format): the current file is finished and the recording continues in
  a new part, OUT-part2.mp4, OUT-part3.mp4, ..., each timed from its own
  first frame.
- Ctrl-C or SIGTERM stop the recording; the encoder is flushed and the file
  closed, so it is playable. A second signal aborts at once.
- --fps is only the nominal rate given to the encoder and the container
  (rate control, metadata); timestamps always come from the frames. By
  default it is 1/time_base when that looks like a frame rate (1/25), else
  the rate the broker measured, else 30.

It prints one line per file written and a summary: frames written, skipped,
overwritten, duration. Exit status 1 if no frame at all was recorded.
"""

from __future__ import annotations

import logging
import signal
import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import click
import numpy as np

import framebus
from framebus.names import validate_stream_name
from framebus.options import broker_option
from framebus.protocol.broker import StreamInfo

log = logging.getLogger("framebus.clients.record")

MICROSECOND = Fraction(1, 1_000_000)
_CRF_CODECS = ("libx264", "libx265", "libvpx", "libvpx-vp9", "libaom-av1", "libsvtav1")
_PRESET_CODECS = ("libx264", "libx265")


@dataclass(frozen=True)
class Settings:
    codec: str = "libx264"
    crf: int = 23
    preset: str = "veryfast"
    fps: float | None = None

    def options(self) -> dict[str, str]:
        """Encoder options; only those the chosen codec understands."""
        opts = {}
        if self.codec in _CRF_CODECS:
            opts["crf"] = str(self.crf)
        if self.codec in _PRESET_CODECS:
            opts["preset"] = self.preset
        return opts


class RecordError(click.ClickException):
    """A stream this recorder cannot encode; the files so far are finished first."""


# -- pixels ------------------------------------------------------------------------


def encoded_size(frame: framebus.Frame) -> tuple[int, int]:
    """(width, height) the encoder gets for *frame*: even, cropping rgb/gray by one pixel."""
    if frame.dtype != np.uint8:
        raise RecordError(f"cannot record {frame.dtype} pixels, only uint8")
    if frame.fmt == "yuv420p":
        rows, width = frame.shape
        height = rows * 2 // 3
        if rows % 3 or width % 2 or height % 2:
            raise RecordError(f"yuv420p frame of array shape {frame.shape} is not an even-sized "
                              "I420 picture; refusing to record it")
        return width, height
    if frame.fmt not in ("bgr24", "rgb24", "gray"):
        raise RecordError(f"cannot record pixel format {frame.fmt!r} "
                          "(bgr24, rgb24, gray and yuv420p can be)")
    height, width = frame.shape[:2]
    if width < 2 or height < 2:
        raise RecordError(f"a {width}x{height} picture is too small to encode")
    return width - width % 2, height - height % 2


def video_frame(frame: framebus.Frame, width: int, height: int) -> av.VideoFrame:
    """A private av.VideoFrame of *frame*'s pixels; check frame.valid() afterwards."""
    if frame.fmt == "yuv420p":
        return av.VideoFrame.from_ndarray(frame.array, format="yuv420p")
    return av.VideoFrame.from_ndarray(frame.array[:height, :width], format=frame.fmt)


# -- time ----------------------------------------------------------------------------


class Timeline:
    """Output pts of a file's frames, counted from its first frame.

    Follows the producer's pts in its own time_base when the first frame has
    both, else timestamp_ns in microseconds. The encoder needs increasing pts:
    a frame whose time does not move forward (no pts, or a restarted producer
    counting from 0 again) is placed after the previous one by the wall-clock
    interval between them, and the timeline goes on from there.
    """

    def __init__(self, first: framebus.Frame) -> None:
        self.uses_pts = first.pts is not None and first.time_base is not None
        self.time_base: Fraction = first.time_base if self.uses_pts else MICROSECOND
        self._offset = self._source_time(first)  # source time of output pts 0
        self.last: int | None = None
        self._last_ns = first.timestamp_ns

    def _source_time(self, frame: framebus.Frame) -> int | None:
        """*frame*'s time in self.time_base units by the clock followed; None if it has none."""
        if not self.uses_pts:
            return frame.timestamp_ns // 1000
        if frame.pts is None or frame.time_base is None:
            return None
        return round(frame.pts * frame.time_base / self.time_base)

    def pts(self, frame: framebus.Frame) -> int:
        """The output pts of *frame*, the next frame written."""
        source = self._source_time(frame)
        out = None if source is None else source - self._offset
        if self.last is not None and (out is None or out <= self.last):
            out = self._after_last(frame, source)
        self.last, self._last_ns = out, frame.timestamp_ns
        return out

    def _after_last(self, frame: framebus.Frame, source: int | None) -> int:
        """Place *frame* after the previous one by the wall-clock interval between them."""
        wall = Fraction(frame.timestamp_ns - self._last_ns, 10**9) / self.time_base
        out = self.last + max(1, round(wall))
        if source is not None:
            self._offset = source - out  # and follow the producer's clock again from here
        log.warning("%s: the time of frame %d does not follow the previous frame's; placed "
                    "%.3f s after it", frame.stream, frame.seq,
                    float((out - self.last) * self.time_base))
        return out


def nominal_rate(frame: framebus.Frame, fps: float | None, info: StreamInfo | None) -> Fraction:
    """The frame rate to declare to the encoder and container (not used for timestamps)."""
    if fps:
        return Fraction(fps).limit_denominator(1001)
    if frame.pts is not None and frame.time_base is not None and 1 <= 1 / frame.time_base <= 240:
        return 1 / frame.time_base
    if info is not None and info.fps >= 1:
        return Fraction(round(info.fps))
    return Fraction(30)


# -- files ---------------------------------------------------------------------------


class Part:
    """One output file: container, video stream, encoder and timeline."""

    def __init__(self, path: Path, first: framebus.Frame, settings: Settings,
                 rate: Fraction) -> None:
        self.path = path
        self.geometry = (first.shape, first.fmt)
        self.width, self.height = encoded_size(first)
        self.rate = rate
        self.timeline = Timeline(first)
        self.frames = 0
        self._closed = False
        self.container = av.open(str(path), "w")
        try:
            self.stream = self.container.add_stream(
                settings.codec, rate=rate, width=self.width, height=self.height,
                pix_fmt="yuv420p", time_base=self.timeline.time_base,
                options=settings.options())
        except BaseException:
            self.container.close()
            raise

    def write(self, image: av.VideoFrame, frame: framebus.Frame) -> None:
        image.pts = self.timeline.pts(frame)
        image.time_base = self.timeline.time_base
        for packet in self.stream.encode(image):
            self.container.mux(packet)
        self.frames += 1

    @property
    def duration(self) -> float:
        """Seconds from the first frame to the end of the last (one nominal frame long)."""
        return float((self.timeline.last or 0) * self.timeline.time_base + 1 / self.rate)

    def close(self) -> None:
        """Flush the encoder and finish the file (its index), so that it plays. Idempotent."""
        if self._closed:
            return
        self._closed = True
        try:
            for packet in self.stream.encode(None):
                self.container.mux(packet)
        finally:
            self.container.close()


def part_path(out: Path, number: int) -> Path:
    return out if number == 1 else out.with_name(f"{out.stem}-part{number}{out.suffix}")


class Recorder:
    """Frames in, video files out; counts what it wrote, missed and dropped."""

    def __init__(self, out: Path, settings: Settings) -> None:
        self.out = out
        self.settings = settings
        self.parts: list[Part] = []
        self.skipped = 0  # never received: lapped in the ring before we read them
        self.overwritten = 0  # received, but overwritten while we copied them

    @property
    def written(self) -> int:
        return sum(p.frames for p in self.parts)

    def add(self, frame: framebus.Frame, info: StreamInfo | None = None) -> None:
        self.skipped += frame.skipped
        width, height = encoded_size(frame)
        image = video_frame(frame, width, height)
        if not frame.valid():
            self.overwritten += 1
            log.debug("%s: frame %d overwritten while copied; dropped", frame.stream, frame.seq)
            return
        self._part_for(frame, info).write(image, frame)

    def _part_for(self, frame: framebus.Frame, info: StreamInfo | None) -> Part:
        if self.parts and self.parts[-1].geometry == (frame.shape, frame.fmt):
            return self.parts[-1]
        if self.parts:
            self.parts[-1].close()
        path = part_path(self.out, len(self.parts) + 1)
        part = Part(path, frame, self.settings, nominal_rate(frame, self.settings.fps, info))
        self.parts.append(part)
        self._announce(part, frame)
        return part

    def _announce(self, part: Part, frame: framebus.Frame) -> None:
        clock = "pts" if part.timeline.uses_pts else "timestamp_ns"
        what = "recording" if len(self.parts) == 1 else "geometry changed: continuing"
        click.echo(f"{what} {frame.stream} to {part.path} ({part.width}x{part.height} from "
                   f"{frame.fmt} {frame.shape}, timed by {clock}, {self.settings.codec})",
                   err=True)
        width, height = frame.shape[1], frame.shape[0]
        if frame.fmt != "yuv420p" and (width, height) != (part.width, part.height):
            click.echo(f"{frame.stream}: {width}x{height} is odd-sized; cropped to "
                       f"{part.width}x{part.height} for yuv420p", err=True)

    def close(self) -> None:
        if self.parts:
            self.parts[-1].close()

    def summary(self, reason: str) -> str:
        lines = [f"{p.path}: {p.frames} frames, {p.width}x{p.height}, {p.duration:.3f} s"
                 for p in self.parts]
        total = sum(p.duration for p in self.parts)
        lines.append(f"{reason}: {self.written} frames written, {self.skipped} skipped, "
                     f"{self.overwritten} overwritten, {total:.3f} s in {len(self.parts)} file(s)")
        return "\n".join(lines)


# -- the command -----------------------------------------------------------------------


class StopRequest:
    """SIGINT and SIGTERM ask the recording to stop, so that the file gets finished.

    The signal only sets a flag the loop checks between frames (at least every
    0.25 s); interrupting the encoder mid-call could leave a broken file. A
    second signal aborts at once.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.signal: str | None = None
        self._previous: dict = {}

    def __enter__(self) -> StopRequest:
        self._previous = {s: signal.signal(s, self._handle) for s in self.SIGNALS}
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def _handle(self, signum: int, _frame) -> None:
        if self.signal is not None:
            raise KeyboardInterrupt
        self.signal = signal.Signals(signum).name

    @property
    def requested(self) -> bool:
        return self.signal is not None


def record(sub: framebus.Subscriber, recorder: Recorder, stop: StopRequest,
           frames: int | None, duration: float | None) -> str:
    """Feed frames to *recorder* until a limit or a stop signal; returns why it stopped."""
    end = None  # --duration counts from the first frame
    said_waiting = False
    while True:
        if stop.requested:
            return f"stopped by {stop.signal}"
        if frames is not None and recorder.written >= frames:
            return f"{frames} frames recorded"
        if end is not None and time.monotonic() >= end:
            return f"{duration:g} s recorded"
        try:
            frame = sub.recv(timeout=0.25)
        except framebus.Timeout:
            if not recorder.parts and not said_waiting:
                click.echo(f"waiting for frames of {sub.name}...", err=True)
                said_waiting = True
            continue
        recorder.add(frame, sub.info)
        if end is None and duration is not None:
            end = time.monotonic() + duration


def check_output(out: Path, settings: Settings) -> None:
    """Fail now, not at the first frame, on an unknown codec, a container that refuses it,
    or a file that cannot be created. Creates *out* to find out, then removes it.
    """
    try:
        codec = av.Codec(settings.codec, "w")
    except Exception as exc:  # UnknownCodecError and friends
        raise click.ClickException(f"no encoder {settings.codec!r}: {exc}") from None
    if codec.type != "video":
        raise click.ClickException(f"{settings.codec!r} is not a video encoder")
    try:
        out.open("wb").close()  # FFmpeg opens the file only at the first frame
    except OSError as exc:
        raise click.ClickException(f"cannot write {out}: {exc.strerror}") from None
    try:
        _check_container(out, settings.codec)
    finally:
        out.unlink(missing_ok=True)


def _check_container(out: Path, codec: str) -> None:
    try:
        container = av.open(str(out), "w")
    except Exception as exc:
        raise click.ClickException(f"cannot write {out}: {exc}") from None
    try:
        container.add_stream(codec)
    except Exception as exc:
        raise click.ClickException(f"cannot write {codec} into {out}: {exc}") from None
    finally:
        container.close()


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("name")
@click.argument("out", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--duration", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Stop this many seconds after the first frame.")
@click.option("--frames", type=click.IntRange(min=1), default=None,
              help="Stop after writing this many frames.")
@click.option("--codec", default="libx264", show_default=True, help="FFmpeg video encoder.")
@click.option("--crf", type=click.IntRange(0, 63), default=23, show_default=True,
              help="Constant rate factor: lower is better and bigger (x264, x265, vpx, av1).")
@click.option("--preset", default="veryfast", show_default=True,
              help="Encoder speed preset (x264, x265): fast enough to keep up live.")
@click.option("--fps", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Nominal frame rate to declare; timestamps always come from the frames.")
@broker_option
def command(name: str, out: Path, duration: float | None, frames: int | None, codec: str,
            crf: int, preset: str, fps: float | None, broker: str) -> None:
    """Record stream NAME to the video file OUT (MP4, or what its extension says)."""
    logging.basicConfig(format="%(levelname)s %(name)s: %(message)s")  # no-op under `framebus`
    settings = Settings(codec, crf, preset, fps)
    try:
        validate_stream_name(name)
    except framebus.InvalidName as exc:
        raise click.ClickException(str(exc)) from None
    check_output(out, settings)
    recorder = Recorder(out, settings)
    reason = "aborted"
    with StopRequest() as stop:
        try:
            with framebus.Subscriber(name, broker=broker, mode="all") as sub:
                reason = record(sub, recorder, stop, frames, duration)
        finally:
            recorder.close()
            click.echo(recorder.summary(reason))
    if not recorder.written:
        raise click.ClickException(f"no frame of {name!r} was recorded; {out} not written")


if __name__ == "__main__":
    command()
