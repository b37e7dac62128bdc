"""A recording's files: frames re-encoded into one video file per geometry, with their own
timing. framebus/clients/record.py is the command around it; its docstring gives the design.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import click
import numpy as np

import framebus
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
