"""Where frames come from: a file, a network stream, a capture device, or the test pattern.

``Source.parse("rtsp://cam/stream")`` tells the kind of a SOURCE argument, and
``source.open()`` gives an iterator of decoded ``av.VideoFrame``s. The kind decides
how the worker treats the source: a file plays at its own timing and ends; a live
source (network, device, test pattern) is read as it comes and reconnected when it
drops.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from ..errors import SourceError
from ..spec import DecodeSpec
from ..testsrc import TestPattern
from . import hardware

log = logging.getLogger(__name__)

NETWORK_SCHEMES = ("rtsp", "rtsps", "rtmp", "http", "https", "tcp", "udp", "srt")
TESTSRC = "testsrc"
#: The test pattern's picture when --size does not say.
TESTSRC_SIZE = (640, 480)
TESTSRC_FPS = 30.0
#: Packets a demand decoder keeps at most while idle (10 s at 60 fps), for a reader's start.
MAX_GOP = 600


@dataclass(frozen=True)
class Source:
    """A SOURCE argument, understood."""

    url: str
    kind: str  # "file", "network", "device" or "testsrc"

    @classmethod
    def parse(cls, text: str) -> Source:
        text = text.strip()
        if not text:
            raise SourceError("empty source")
        scheme = text.split("://", 1)[0].lower() if "://" in text else ""
        if text == TESTSRC:
            return cls(text, "testsrc")
        if scheme in NETWORK_SCHEMES:
            return cls(text, "network")
        if scheme == "file":
            return cls(text[len("file://"):], "file")
        if scheme:
            raise SourceError(f"unsupported source scheme {scheme!r}; use a file path, "
                              f"{', '.join(s + '://' for s in NETWORK_SCHEMES)}, /dev/videoN "
                              f"or {TESTSRC}")
        if text.startswith("/dev/video"):
            return cls(text, "device")
        return cls(text, "file")

    @property
    def live(self) -> bool:
        """Live sources are read as they come, never paced, and reconnected when they drop."""
        return self.kind != "file"

    def __str__(self) -> str:
        return self.url


class Input:
    """An opened source: its frames, its time base, and a close() that always works."""

    time_base: Fraction | None = None

    def frames(self) -> Iterator[av.VideoFrame]:
        raise NotImplementedError

    def close(self) -> None:
        pass

    #: Frames skipped because of corrupt packets, so far.
    broken = 0

    @property
    def errors(self) -> int:
        """Corrupt packets met so far."""
        return 0


def open_source(source: Source, spec: DecodeSpec) -> Input:
    """Open *source* as *spec* says (transport, timeout, threads; the test pattern's size
    and rate); raises SourceError with a one-line reason if it cannot be."""
    if source.kind == "testsrc":
        width, height = spec.size or TESTSRC_SIZE
        return PatternInput((width, height), spec.fps or TESTSRC_FPS)
    if source.kind == "file" and not Path(source.url).is_file():
        raise SourceError(f"no such file: {source.url}")
    arguments = _open_arguments(source, spec)
    hwaccel = hardware.choose(spec.hwaccel)
    try:
        container = hardware.open_with(source.url, arguments, hwaccel, spec.hwaccel)
    except (av.FFmpegError, OSError) as exc:
        raise SourceError(f"cannot open {source}: {_reason(exc)}") from None
    try:
        return ContainerInput(container, spec.threads, spec.decode)
    except SourceError:
        container.close()
        raise


def _open_arguments(source: Source, spec: DecodeSpec) -> dict:
    timeout_us = str(int(spec.timeout * 1e6))
    opts: dict[str, str] = {}
    fmt = None
    if source.kind == "network":
        scheme = source.url.split("://", 1)[0].lower()
        if scheme in ("rtsp", "rtsps"):
            opts["rtsp_transport"] = spec.transport
            opts["timeout"] = timeout_us  # socket I/O timeout of the RTSP demuxer
        else:
            opts["rw_timeout"] = timeout_us  # every other protocol's read timeout
        opts["fflags"] = "nobuffer"  # hand frames over as they come: latency over smoothness
    elif source.kind == "device":
        fmt = "v4l2"
    # open_timeout bounds the whole opening, whatever the protocol's own timeouts do.
    return {"format": fmt, "container_options": opts, "timeout": (spec.timeout, spec.timeout)}


def _reason(exc: BaseException) -> str:
    text = getattr(exc, "strerror", None) or str(exc)
    return " ".join(str(text).split())


class ContainerInput(Input):
    """Frames decoded by FFmpeg from a container's first video stream, threaded."""

    def __init__(self, container: av.container.InputContainer, threads: int,
                 mode: str = "always") -> None:
        if not container.streams.video:
            raise SourceError(f"{container.name} has no video stream")
        self._container = container
        self._stream = stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        stream.codec_context.thread_count = threads
        # FFmpeg gives every video stream a time base; MPEG's 90 kHz should one lack it.
        time_base = stream.time_base or Fraction(1, 90000)
        self.time_base = time_base
        # Raw elementary streams (.h264 files, tcp:// feeds) carry no timestamps, and an
        # RTSP stream's first frame may lack one: such frames get the previous frame's
        # pts plus one frame at the stream's nominal rate.
        rate = Fraction(stream.average_rate or stream.guessed_rate or 25)
        self._step = max(1, round(1 / (rate * time_base)))
        self._last_pts: int | None = None
        self._errors = 0
        self.broken = 0  # frames skipped after a decode error, until the next key frame
        self.gate = DecodeGate(mode, stream.codec_context)
        #: Called with every packet demuxed, before it is decoded (or not): the worker
        #: publishes it as it came, so its bytes are PyAV's demux's own.
        self.on_packet: Callable[[av.Packet], None] | None = None

    @property
    def stream(self) -> av.video.stream.VideoStream:
        return self._stream

    @property
    def errors(self) -> int:
        return self._errors

    def frames(self) -> Iterator[av.VideoFrame]:
        """Decoded frames until the end of the source.

        A corrupt packet is counted, and the frames from it are skipped until the
        next key frame: FFmpeg would conceal the damage and hand them over smeared,
        and a bus never delivers a broken picture. A read error ends the iteration
        with SourceError (a damaged file, or a network source gone).
        """
        resyncing = False
        try:
            for packet in whole_pictures(self._container.demux(self._stream), self._stream):
                if self.on_packet is not None and packet.size:
                    self.on_packet(packet)
                for admitted in self.gate.admit(packet):
                    try:
                        decoded = admitted.decode()
                    except av.InvalidDataError as exc:
                        self._errors += 1
                        resyncing = True
                        log.warning("%s: corrupt packet, skipping to the next key frame: %s",
                                    self._container.name, _reason(exc))
                        continue
                    for frame in decoded:
                        # FFmpeg flags the first frame it had to conceal; the ones after it
                        # predict from that damage until a key frame starts afresh.
                        resyncing = frame.is_corrupt or (resyncing and not frame.key_frame)
                        if resyncing:
                            self.broken += 1
                            continue
                        yield self._timed(frame)
        except av.EOFError:
            return
        except (av.FFmpegError, OSError) as exc:
            raise SourceError(f"read error on {self._container.name}: {_reason(exc)}") from None

    def _timed(self, frame: av.VideoFrame) -> av.VideoFrame:
        if frame.time_base is None:
            frame.time_base = self.time_base
        if frame.pts is None:
            frame.pts = 0 if self._last_pts is None else self._last_pts + self._step
        self._last_pts = frame.pts
        return frame

    def rewind(self) -> None:
        """Back to the start, for --loop."""
        self._container.seek(0, stream=self._stream)
        self._last_pts = None

    def close(self) -> None:
        self._container.close()


def whole_pictures(packets: Iterable[av.Packet],
                   stream: av.video.stream.VideoStream) -> Iterator[av.Packet]:
    """*packets*, the parts of one picture joined into one packet.

    FFmpeg's RTSP demuxer gives a picture in as many packets as its RTP made of it (a
    1080p key frame of two slices comes as two packets with the same pts and dts). Decoded
    apart, the first part is a concealed half picture that throws the decoder into
    resynchronising; muxed apart, an MP4 refuses the second part's dts. So a packet is held
    until the next one shows whether it continues the same picture: one packet's delay (a
    frame's time, live), and nothing changes for a file, whose packets are whole pictures.
    """
    held: av.Packet | None = None
    for packet in packets:
        if held is None:
            held = packet
        elif packet.size and packet.dts is not None and (packet.pts, packet.dts) == (
                held.pts, held.dts):
            held = _joined(held, packet, stream)
        else:
            yield held
            held = packet
    if held is not None:
        yield held


def _joined(a: av.Packet, b: av.Packet, stream: av.video.stream.VideoStream) -> av.Packet:
    joined = av.Packet(bytes(a) + bytes(b))
    joined.pts, joined.dts, joined.time_base = a.pts, a.dts, a.time_base
    joined.duration = max(a.duration or 0, b.duration or 0)
    joined.is_keyframe = a.is_keyframe or b.is_keyframe
    joined.is_corrupt = a.is_corrupt or b.is_corrupt
    joined.stream = stream
    return joined


class DecodeGate:
    """Which packets are decoded: all ("always"); only key frames ("keyframes", with
    FFmpeg's skip_frame NONKEY too); or, "demand", all while ``wanted`` is true.

    Demand keeps the packets since the last key frame while it does not decode, so that a
    reader who arrives mid-GOP need not wait for the next key frame: decoding starts at
    once from the one before, catching up (the worker drops the catch-up frames that are
    late, as it drops any late frame) to the picture of now.
    """

    def __init__(self, mode: str, codec: av.codec.context.CodecContext) -> None:
        self.mode = mode
        self._codec = codec
        #: For "demand": whether pixels are wanted now (the worker sets it from the
        #: pixel stream's subscriber count).
        self.wanted = mode != "demand"
        self.decoding = mode != "demand"
        self._gop: list[av.Packet] = []  # demand, idle: the packets since the last key frame
        if mode == "keyframes":
            codec.skip_frame = "NONKEY"
            # Frame threads hold a picture back until as many more packets came: with one
            # key frame a second, seconds. Slices only, then.
            codec.thread_type = "SLICE"

    def admit(self, packet: av.Packet) -> list[av.Packet]:
        """The packets to decode now that *packet* came (none, it, or a GOP up to it)."""
        if self.mode == "always":
            return [packet]
        if self.mode == "keyframes":
            return [packet] if packet.is_keyframe else []
        if not self.wanted:
            if self.decoding:
                log.info("no pixel subscriber: decoding stops, packets flow on")
            self.decoding = False
            self._keep(packet)
            return []
        if self.decoding:
            return [packet]
        self._keep(packet)
        if not self._gop:
            return []  # no key frame seen yet: from the next one
        self._codec.flush_buffers()  # nothing half-decoded from before the pause
        self.decoding = True
        log.info("a pixel subscriber: decoding from the last key frame on")
        gop, self._gop = self._gop, []
        return gop

    def _keep(self, packet: av.Packet) -> None:
        if packet.is_keyframe:
            self._gop = [packet]
        elif self._gop and packet.size:
            self._gop.append(packet)
            if len(self._gop) > MAX_GOP:  # key frames too rare to keep a GOP: from the next
                self._gop = []


class PatternInput(Input):
    """The built-in moving test pattern as a live source (bgr24 frames at a fixed rate)."""

    def __init__(self, size: tuple[int, int], fps: float) -> None:
        w, h = size
        self._pattern = TestPattern((h, w, 3))
        self._fps = fps
        rate = Fraction(fps).limit_denominator(1001)
        self.time_base = Fraction(1, 1000) if fps <= 0 else 1 / rate

    def frames(self) -> Iterator[av.VideoFrame]:
        image = np.empty(self._pattern.shape, np.uint8)
        start = time.monotonic()
        n = 0
        while True:
            if self._fps > 0:
                delay = start + n / self._fps - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            self._pattern.fill(image, n)
            frame = av.VideoFrame.from_ndarray(image, format="bgr24")
            frame.pts = n
            frame.time_base = self.time_base
            yield frame
            n += 1
