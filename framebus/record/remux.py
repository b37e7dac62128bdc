"""Packets into files, with no decoding and no encoding.

A :class:`SegmentFile` is one output file: a stream made from the codec's parameters
(``template``), packets muxed with their own pts/dts/duration in the producer's time
base, shifted so the file starts at 0. MP4 is written fragmented (a fragment per key
frame, an empty moov first), so a recorder killed mid-file leaves every fragment
before the kill playable; MKV is written as FFmpeg writes it (also readable when cut).

A :class:`Remuxer` is a recording: it starts on a key frame, and starts a new file
when the codec parameters change (a restarted producer, a new picture size), when
time runs backwards (a restarted producer with the same parameters), or, with a
period, at the first key frame a period after the file's first packet, so that each
packet is in exactly one file. The parts of one picture (an RTSP camera's slices) are
joined into one sample first (``access``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, Protocol

import av

from ..packets.layout import CodecLike
from .access import Assembler, Whole
from .template import CODEC_IDS, template_stream

log = logging.getLogger("framebus.record")

#: A fragment per key frame, the moov written empty at the start: playable when cut.
#: flush_packets: each packet reaches the file at once, not FFmpeg's 32 KB buffer, so a
#: SIGKILL loses only the fragment being written (one write a packet: 25 a second).
MP4_OPTIONS = {"movflags": "frag_keyframe+empty_moov+default_base_moof", "flush_packets": "1"}
MKV_OPTIONS = {"flush_packets": "1"}


class PacketLike(Protocol):
    @property
    def pts(self) -> int | None: ...
    @property
    def dts(self) -> int | None: ...
    @property
    def duration(self) -> int: ...
    @property
    def keyframe(self) -> bool: ...


def container_format(path: Path) -> str:
    return "matroska" if path.suffix.lower() in (".mkv", ".mka", ".webm") else "mp4"


class SegmentFile:
    """One output file of packets of one codec configuration."""

    def __init__(self, path: Path, codec: CodecLike) -> None:
        self.path = path
        self.codec = codec
        self.time_base = Fraction(*codec.time_base)
        self.packets = 0
        self.bytes = 0
        self.first_dts: int | None = None
        self.last_dts: int | None = None
        self._template_container: Any
        self.container: Any
        self._template_container, template = template_stream(
            codec.name, codec.extradata, codec.width, codec.height)
        fmt = container_format(path)
        self.container = av.open(str(path), "w", format=fmt,
                                 options=MP4_OPTIONS if fmt == "mp4" else MKV_OPTIONS)
        try:
            self.stream = self.container.add_stream_from_template(template, opaque=True)
            self.stream.time_base = self.time_base
        except BaseException:
            self.close()
            raise

    def write(self, data: bytes, packet: PacketLike) -> None:
        dts = packet.dts if packet.dts is not None else packet.pts
        if self.first_dts is None:
            self.first_dts = dts if dts is not None else 0
        out = av.Packet(data)
        out.time_base = self.time_base
        if packet.pts is not None:
            out.pts = packet.pts - self.first_dts
        if dts is not None:
            out.dts = dts - self.first_dts
        out.duration = packet.duration
        out.is_keyframe = bool(packet.keyframe)
        out.stream = self.stream
        self.container.mux(out)
        self.packets += 1
        self.bytes += len(data)
        self.last_dts = dts

    def close(self) -> None:
        """Finish the file (its last fragment). Idempotent."""
        container, self.container = getattr(self, "container", None), None
        if container is not None:
            container.close()
        if self._template_container is not None:
            self._template_container.close()
            self._template_container = None


def period_path(pattern: str, when: float, taken: Callable[[Path], bool]) -> Path:
    """*pattern* with strftime fields of local time *when*; -2, -3, ... when taken."""
    path = Path(time.strftime(pattern, time.localtime(when)))
    number = 1
    candidate = path
    while taken(candidate):
        number += 1
        candidate = path.with_name(f"{path.stem}-{number}{path.suffix}")
    return candidate


def same_codec(a: CodecLike, b: CodecLike) -> bool:
    return (a.name, bytes(a.extradata), tuple(a.time_base), a.width, a.height) == (
        b.name, bytes(b.extradata), tuple(b.time_base), b.width, b.height)


@dataclass
class Remuxer:
    """A recording: packets in (from a key frame), files out.

    *pattern* is the output path, with strftime fields (``cam1-%Y%m%d-%H%M%S.mp4``);
    *segment* seconds of media per file (None: one file until the parameters change).
    """

    pattern: str
    segment: float | None = None
    on_file: Callable[[SegmentFile, str], None] | None = None
    files: list[SegmentFile] = field(default_factory=list)
    waiting_for_key: int = 0  # pictures dropped before the first key frame of a file
    #: Directories in the pattern are made as files need them (a '{stream}/...' pattern).
    make_dirs: bool = False
    _current: SegmentFile | None = None
    _assembler: Assembler = field(default_factory=Assembler)
    _paths: set[Path] = field(default_factory=set)

    @property
    def packets(self) -> int:
        return sum(f.packets for f in self.files)

    def add(self, data: bytes, packet: PacketLike, codec: CodecLike,
            wall: float | None = None) -> bool:
        """Take one packet; False when it was dropped while waiting for a key frame. A
        picture is written once the next packet shows it is whole."""
        if self._current is None and codec.name not in CODEC_IDS:
            template_stream(codec.name, b"", 0, 0)  # raises its UnsupportedCodec, now
        finished, started = self._assembler.push(data, packet, codec, wall)
        if finished is not None:
            self._write(finished)
        if started is not None and self._waits_for_key(started):
            self._assembler.drop()  # the parts that follow continue nothing: dropped too
            return False
        return True

    def _waits_for_key(self, picture: Whole) -> bool:
        """Whether *picture* would start a file but is no key frame: dropped, counted."""
        if picture.keyframe or self._cut_reason(picture, picture.codec) is None:
            return False
        self._finish()
        self.waiting_for_key += 1
        return True

    def _write(self, whole: Whole) -> bool:
        packet, codec, wall, data = whole, whole.codec, whole.wall, whole.data
        reason = self._cut_reason(packet, codec)
        if reason is not None:
            if not packet.keyframe:
                self._finish()
                self.waiting_for_key += 1
                return False
            self._finish()
            self._start(codec, wall if wall is not None else time.time(), reason)
        assert self._current is not None
        self._current.write(data, packet)
        return True

    def _cut_reason(self, packet: PacketLike, codec: CodecLike) -> str | None:
        current = self._current
        if current is None:
            return "start"
        if not same_codec(current.codec, codec):
            return "codec parameters changed"
        dts = packet.dts if packet.dts is not None else packet.pts
        if dts is not None and current.last_dts is not None and dts <= current.last_dts:
            return "time went backwards (producer restarted)"
        if (self.segment is not None and packet.keyframe and dts is not None
                and current.first_dts is not None
                and (dts - current.first_dts) * current.time_base >= self.segment):
            return "segment period"
        return None

    def _start(self, codec: CodecLike, wall: float, reason: str) -> None:
        path = period_path(self.pattern, wall,
                           self._paths.__contains__)
        self._paths.add(path)
        if self.make_dirs:
            path.parent.mkdir(parents=True, exist_ok=True)
        self._current = SegmentFile(path, codec)
        self.files.append(self._current)
        log.info("%s: %s (%s %dx%d)", path, reason, codec.name, codec.width, codec.height)
        if self.on_file is not None:
            self.on_file(self._current, reason)

    def _finish(self) -> None:
        if self._current is not None:
            self._current.close()
            self._current = None

    def drop_held(self) -> None:
        """Forget the picture still held, unwritten: it is beyond what was asked for, and
        its other parts may never come."""
        self._assembler.drop()

    def close(self) -> None:
        """Write the picture still held, and finish the file."""
        whole = self._assembler.flush()
        try:
            if whole is not None:
                self._write(whole)
        finally:
            self._finish()
