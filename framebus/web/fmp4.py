"""H.264 packets into fragmented MP4 for the browser's Media Source Extensions.

No decoding, no encoding: the packets' own bytes go into the boxes. The init segment
(ftyp + moov) is one video track whose avcC comes from the stream's extradata (avcC as
an MP4 or MKV source has it, or Annex B as RTSP and a bare libx264 give it, or, with no
extradata, the SPS/PPS of the first key frame); then each packet is one fragment
(moof + mdat) the moment it arrives, so the muxer adds no frame of latency.

The boxes are written here rather than by FFmpeg's mov muxer through PyAV: with
``frag_every_frame`` the mov muxer writes a fragment only when the *next* packet comes
(a frame of latency: 40 ms at 25 fps), and every packet would cross PyAV twice (an
av.Packet copy in, an I/O callback out). A fragment here is five struct.packs around
the packet: 5 us a 1080p packet against PyAV's 12 us, measured; latency decided it.

H.265 is not here: Debian's Chromium says no to ``hvc1``/``hev1`` in MSE (it decodes
HEVC only through platform decoders), so an HEVC stream is shown as MJPEG from pixels.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

from ..packets.layout import CodecLike

#: The one track's id in every box that names it.
TRACK = 1
#: trun sample flags: a sync sample, and one that depends on others (ISO 14496-12 8.8.3.1).
KEY_FLAGS = 0x02000000
DELTA_FLAGS = 0x01010000
#: trun: data offset, sample duration, size, flags, composition offset present.
TRUN_FLAGS = 0x000001 | 0x000100 | 0x000200 | 0x000400 | 0x000800
#: tfhd: the fragment's data offsets count from its moof (what MSE expects).
DEFAULT_BASE_IS_MOOF = 0x020000
UNITY = (0x00010000, 0, 0, 0, 0x00010000, 0, 0, 0, 0x40000000)

SPS, PPS = 7, 8


class Unplayable(ValueError):
    """Packets this muxer cannot put into an MP4 the browser plays (a codec, or no SPS)."""


# -- boxes ---------------------------------------------------------------------------------


def box(kind: bytes, *payload: bytes) -> bytes:
    body = b"".join(payload)
    return struct.pack(">I4s", 8 + len(body), kind) + body


def full_box(kind: bytes, version: int, flags: int, *payload: bytes) -> bytes:
    return box(kind, struct.pack(">I", version << 24 | flags), *payload)


# -- H.264 parameters ----------------------------------------------------------------------


def annexb_units(data: bytes | memoryview) -> Iterator[memoryview]:
    """The NAL units of an Annex B byte stream (start codes of 3 or 4 bytes), no copies."""
    raw = bytes(data) if not isinstance(data, bytes) else data
    view = memoryview(raw)
    start = raw.find(b"\x00\x00\x01")
    while start >= 0:
        begin = start + 3
        start = raw.find(b"\x00\x00\x01", begin)
        end = len(raw) if start < 0 else start
        while end > begin and raw[end - 1] == 0:  # a 4-byte start code's zero, or padding
            end -= 1
        if end > begin:
            yield view[begin:end]


def is_annexb(data: bytes | memoryview) -> bool:
    head = bytes(data[:4])
    return head.startswith(b"\x00\x00\x01") or head == b"\x00\x00\x00\x01"


def length_prefixed(data: bytes | memoryview) -> bytes:
    """An Annex B access unit as MP4 samples carry it: each NAL unit after its 4-byte size."""
    return b"".join(struct.pack(">I", len(unit)) + unit for unit in annexb_units(data))


def avcc_from_units(units: list[memoryview] | list[bytes]) -> bytes:
    """An AVCDecoderConfigurationRecord (ISO 14496-15 5.3.3) of the SPS and PPS in *units*."""
    sps = [bytes(u) for u in units if u[0] & 0x1F == SPS]
    pps = [bytes(u) for u in units if u[0] & 0x1F == PPS]
    if not sps or not pps or len(sps[0]) < 4:
        raise Unplayable("no SPS and PPS in the stream's parameters or its key frame")
    out = bytearray([1, sps[0][1], sps[0][2], sps[0][3], 0xFF, 0xE0 | len(sps)])
    for unit in sps:
        out += struct.pack(">H", len(unit)) + unit
    out.append(len(pps))
    for unit in pps:
        out += struct.pack(">H", len(unit)) + unit
    return bytes(out)


def avc_config(extradata: bytes, key_frame: bytes | memoryview | None = None) -> bytes:
    """The avcC for a stream: its extradata if already one, else made from Annex B
    parameters (the extradata's, or else the key frame's in-band SPS/PPS)."""
    if extradata[:1] == b"\x01" and len(extradata) >= 7:
        return extradata
    if extradata:
        return avcc_from_units(list(annexb_units(extradata)))
    if key_frame is not None and is_annexb(key_frame):
        return avcc_from_units(list(annexb_units(key_frame)))
    raise Unplayable("an H.264 stream with no extradata and no SPS/PPS in its key frame")


def codec_string(avcc: bytes) -> str:
    """RFC 6381's ``avc1.PPCCLL``: profile_idc, constraint flags, level_idc of the SPS."""
    return f"avc1.{avcc[1]:02x}{avcc[2]:02x}{avcc[3]:02x}"


# -- the init segment ----------------------------------------------------------------------


def _sample_entry(avcc: bytes, width: int, height: int) -> bytes:
    return box(b"avc1", bytes(6), struct.pack(">H", 1), bytes(16),
               struct.pack(">HHIIIH", width, height, 0x00480000, 0x00480000, 0, 1),
               bytes(32), struct.pack(">Hh", 0x0018, -1), box(b"avcC", avcc))


def init_segment(avcc: bytes, width: int, height: int, timescale: int) -> bytes:
    """ftyp + moov of one H.264 track, no samples (they come in fragments: mvex)."""
    matrix = struct.pack(">9I", *UNITY)
    empty_table = struct.pack(">I", 0)
    stbl = box(b"stbl",
               full_box(b"stsd", 0, 0, struct.pack(">I", 1), _sample_entry(avcc, width, height)),
               full_box(b"stts", 0, 0, empty_table), full_box(b"stsc", 0, 0, empty_table),
               full_box(b"stsz", 0, 0, bytes(8)), full_box(b"stco", 0, 0, empty_table))
    dinf = box(b"dinf", full_box(b"dref", 0, 0, struct.pack(">I", 1),
                                 full_box(b"url ", 0, 1)))
    minf = box(b"minf", full_box(b"vmhd", 0, 1, bytes(8)), dinf, stbl)
    mdia = box(b"mdia",
               full_box(b"mdhd", 0, 0, struct.pack(">IIIIHH", 0, 0, timescale, 0, 0x55C4, 0)),
               full_box(b"hdlr", 0, 0, bytes(4), b"vide", bytes(12), b"framebus\x00"),
               minf)
    tkhd = full_box(b"tkhd", 0, 3, struct.pack(">IIIII", 0, 0, TRACK, 0, 0), bytes(8),
                    struct.pack(">hhhH", 0, 0, 0, 0), matrix,
                    struct.pack(">II", width << 16, height << 16))
    mvhd = full_box(b"mvhd", 0, 0, struct.pack(">IIIIIH", 0, 0, timescale, 0, 0x00010000,
                                               0x0100), bytes(10), matrix, bytes(24),
                    struct.pack(">I", TRACK + 1))
    trex = full_box(b"trex", 0, 0, struct.pack(">IIIII", TRACK, 1, 0, 0, 0))
    ftyp = box(b"ftyp", b"isom", struct.pack(">I", 0x200), b"isomiso6avc1mp41")
    return ftyp + box(b"moov", mvhd, box(b"trak", tkhd, mdia), box(b"mvex", trex))


# -- fragments -----------------------------------------------------------------------------


def fragment(sequence: int, dts: int, duration: int, offset: int, keyframe: bool,
             sample: bytes | memoryview) -> bytes:
    """moof + mdat of one sample: decode time *dts*, composition offset *offset* (pts - dts),
    both in the track's timescale."""
    flags = KEY_FLAGS if keyframe else DELTA_FLAGS
    trun_size = 12 + 4 + 4 + 16
    moof_size = 8 + 16 + 8 + 16 + 20 + trun_size
    trun = full_box(b"trun", 1, TRUN_FLAGS, struct.pack(">IiIIIi", 1, moof_size + 8, duration,
                                                        len(sample), flags, offset))
    traf = box(b"traf", full_box(b"tfhd", 0, DEFAULT_BASE_IS_MOOF, struct.pack(">I", TRACK)),
               full_box(b"tfdt", 1, 0, struct.pack(">Q", dts)), trun)
    moof = box(b"moof", full_box(b"mfhd", 0, 0, struct.pack(">I", sequence)), traf)
    assert len(moof) == moof_size
    return b"".join((moof, struct.pack(">I4s", 8 + len(sample), b"mdat"), sample))


class Muxer:
    """One stream's packets as fragmented MP4: ``init`` once, then ``fragment()`` per packet.

    Times go out in the producer's own time base, from 0 at the first packet; should they
    run backwards (a looping file, a clock step) the track goes on just after the last
    sample instead, since MSE would overwrite what it already has.
    """

    def __init__(self, codec: CodecLike, key_frame: bytes | memoryview | None = None) -> None:
        if codec.name != "h264":
            raise Unplayable(f"{codec.name} packets do not play in this browser's MSE "
                             "(H.264 does)")
        extradata = bytes(codec.extradata)
        self.avcc = avc_config(extradata, key_frame)
        #: Packets as Annex B (RTSP, a bare encoder) rather than as avcC's length-prefixed.
        self.annexb = extradata[:1] != b"\x01"
        num, den = codec.time_base
        self._num = num
        self.timescale = den
        self.codecs = codec_string(self.avcc)
        self.mime = f'video/mp4; codecs="{self.codecs}"'
        self.init = init_segment(self.avcc, codec.width, codec.height, den)
        self._sequence = 0
        self._origin: int | None = None
        self._last: int | None = None  # the last sample's dts out
        self._gap = den // 25 or 1  # a sample's duration when the packet does not say

    def fragment(self, data: bytes | memoryview, *, pts: int | None, dts: int | None,
                 duration: int, keyframe: bool) -> bytes:
        """moof + mdat of one packet (times in the codec's time base)."""
        when = dts if dts is not None else pts
        if when is None:  # no times at all: a sample's length after the last
            when = 0 if self._last is None else self._last // self._num + 1
        if self._origin is None:
            self._origin = when
        out = (when - self._origin) * self._num
        if self._last is not None and out <= self._last:
            self._origin -= (self._last + self._gap - out) // self._num or 1
            out = (when - self._origin) * self._num
        if self._last is not None:
            self._gap = out - self._last  # the next packet's duration if it says none
        self._last = out
        offset = 0 if pts is None else (pts - when) * self._num
        self._sequence += 1
        sample = length_prefixed(data) if self.annexb else data
        return fragment(self._sequence, out, duration * self._num if duration > 0 else self._gap,
                        offset, keyframe, sample)
