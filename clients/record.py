"""framebus record: re-encode a stream to a video file with its true timing.

Usage::

    python -m framebus.clients.record NAME OUT.mp4 [--duration S] [--frames N]
        [--codec libx264] [--crf 23] [--preset veryfast] [--fps F] [--broker ADDR]
    python clients/record.py NAME OUT.mp4
    python -m framebus.clients.record 'cam*' '{stream}/%Y%m%d-%H%M%S.mp4' --segment 10min

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
from pathlib import Path

import av
import click

import framebus
from framebus.clients.recording import Recorder, Settings
from framebus.listing import is_pattern
from framebus.names import validate_stream_name
from framebus.options import broker_option
from framebus.record.live import has_packets

log = logging.getLogger("framebus.clients.record")

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


def check_encoder(settings: Settings) -> None:
    """Fail now on an encoder FFmpeg does not have, or one that is not for video."""
    try:
        codec = av.Codec(settings.codec, "w")
    except Exception as exc:  # UnknownCodecError and friends
        raise click.ClickException(f"no encoder {settings.codec!r}: {exc}") from None
    if codec.type != "video":
        raise click.ClickException(f"{settings.codec!r} is not a video encoder")


def check_output(out: Path, settings: Settings) -> None:
    """Fail now, not at the first frame, on an unknown codec, a container that refuses it,
    or a file that cannot be created. Creates *out* to find out, then removes it.
    """
    check_encoder(settings)
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
@click.argument("names", nargs=-1, required=True, metavar="NAME...")
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
@click.option("--mode", type=click.Choice(["auto", "packets", "reencode"]), default="auto",
              show_default=True, help="packets: copy the stream's compressed packets (no "
              "decoding, no encoding); reencode: encode its pixels; auto: packets when the "
              "stream has them.")
@click.option("--segment", default=None, help="Packets: a new file every period (10min, 30s, "
              "1h), cut at a key frame; OUT may hold strftime fields (cam1-%Y%m%d-%H%M%S.mp4).")
@click.option("--pre", default=None, help="Packets: start with what is still in the packet "
              "ring, up to this long ago (10s).")
@broker_option
def command(names: tuple[str, ...], out: Path, duration: float | None, frames: int | None,
            codec: str, crf: int, preset: str, fps: float | None, mode: str, segment: str | None,
            pre: str | None, broker: str) -> None:
    """Record stream NAME to the video file OUT (MP4, or what its extension says).

    Several NAMEs, or patterns (cam*), are recorded from packets by one process, each
    into OUT with {stream} replaced by its name: '{stream}/%Y%m%d-%H%M%S.mp4'."""
    logging.basicConfig(format="%(levelname)s %(name)s: %(message)s")  # no-op under `framebus`
    settings = Settings(codec, crf, preset, fps)
    if len(names) > 1 or is_pattern(names[0]):
        if mode == "reencode":
            raise click.ClickException("several streams are recorded from packets only "
                                       "(--mode reencode records one stream)")
        if frames is not None:
            raise click.ClickException("--frames counts one stream's frames: with several "
                                       "streams, stop them with --duration")
        from framebus.clients.record_packets import run_many

        run_many(list(names), str(out), duration, segment, pre, broker)
        return
    name = names[0]
    try:
        validate_stream_name(name)
    except framebus.InvalidName as exc:
        raise click.ClickException(str(exc)) from None
    if mode != "packets":  # a mistyped --codec fails at once, not once the stream is up
        check_encoder(settings)
    if mode == "auto":
        mode = "packets" if has_packets(name, broker) else "reencode"
    if mode == "packets":
        from framebus.clients.record_packets import run

        run(name, str(out), duration, segment, pre, broker, frames)
        return
    if segment or pre:
        raise click.ClickException(f"--segment and --pre need packets; {name!r} has none here "
                                   "(a stream made by framebus decode from encoded video has)")
    click.echo(f"{name}: re-encoding mode (no packets; its pixels encoded with {codec})",
               err=True)
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
