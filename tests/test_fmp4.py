"""framebus.web.fmp4 on real H.264 from libx264: what it writes, FFmpeg's own demuxer reads
back, packet for packet, and the codec string is the SPS's."""

from __future__ import annotations

import io
from fractions import Fraction
from pathlib import Path

import av
import pytest

from framebus.packets.layout import CodecInfo
from framebus.testing import media
from framebus.testing.media import DemuxedPacket
from framebus.web.fmp4 import Muxer, Unplayable, annexb_units, length_prefixed


def encode_annexb(frames: int, *, global_header: bool,
                  options: dict[str, str] | None = None) -> tuple[CodecInfo, list[DemuxedPacket]]:
    """Packets of a bare libx264 encoder, as a live producer has them: Annex B, with the
    SPS/PPS in the extradata (global header) or in each key frame."""
    ctx = av.CodecContext.create("libx264", "w")
    ctx.width, ctx.height, ctx.pix_fmt = 320, 240, "yuv420p"
    ctx.time_base = Fraction(1, 90000)
    ctx.framerate = Fraction(25)
    ctx.options = {"preset": "ultrafast", **media.gop_options(25), **(options or {})}
    if global_header:
        ctx.flags |= av.codec.context.Flags.global_header
    packets: list[av.Packet] = []
    for i in range(frames):
        frame = av.VideoFrame.from_ndarray(media.picture(i, 320, 240), format="bgr24")
        frame.pts = i * 3600
        packets += ctx.encode(frame.reformat(format="yuv420p"))
    packets += ctx.encode(None)
    codec = CodecInfo("h264", bytes(ctx.extradata or b""), (1, 90000), 320, 240)
    return codec, [DemuxedPacket.of(p, duration=3600) for p in packets]


def mux(codec: CodecInfo, packets: list[DemuxedPacket]) -> tuple[Muxer, bytes]:
    muxer = Muxer(codec, packets[0].data)
    body = b"".join(muxer.fragment(p.data, pts=p.pts, dts=p.dts, duration=p.duration,
                                   keyframe=p.keyframe) for p in packets)
    return muxer, muxer.init + body


def read_back(data: bytes) -> tuple[bytes, list[DemuxedPacket], int]:
    """(avcC, packets, frames decoded) as FFmpeg's mov demuxer and decoder see *data*."""
    with av.open(io.BytesIO(data), format="mp4") as container:
        stream = container.streams.video[0]
        extradata = bytes(stream.codec_context.extradata)
        packets = [DemuxedPacket.of(p)
                   for p in container.demux(stream) if p.size]
    with av.open(io.BytesIO(data), format="mp4") as container:
        decoded = sum(1 for _ in container.decode(video=0))
    return extradata, packets, decoded


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return media.encode(tmp_path_factory.mktemp("fmp4") / "clip.mp4", 60, 320, 240, gop=25)


def test_an_mp4_sources_packets_come_back_bit_identical_with_their_times(clip):
    codec, packets = media.demux(clip)
    muxer, data = mux(codec, packets)
    avcc, back, decoded = read_back(data)
    assert avcc == codec.extradata  # the source's own avcC, untouched
    assert [p.data for p in back] == [p.data for p in packets]
    assert [p.keyframe for p in back] == [p.keyframe for p in packets]
    start = packets[0].dts
    assert [(p.pts, p.dts) for p in back] == [(p.pts - start, p.dts - start) for p in packets]
    assert decoded == len(packets) == 60
    assert muxer.mime == f'video/mp4; codecs="{muxer.codecs}"'


@pytest.mark.parametrize("global_header", [True, False], ids=["extradata", "in-band"])
def test_annexb_packets_become_length_prefixed_nal_units_of_the_same_bytes(global_header):
    codec, packets = encode_annexb(30, global_header=global_header)
    assert bool(codec.extradata) == global_header
    _, data = mux(codec, packets)
    avcc, back, decoded = read_back(data)
    assert avcc[0] == 1  # an avcC made from the Annex B SPS/PPS
    assert [p.data for p in back] == [length_prefixed(p.data) for p in packets]
    assert [bytes(u) for p in back for u in _units(p.data)] == [
        bytes(u) for p in packets for u in annexb_units(p.data)]
    assert decoded == 30


def _units(sample: bytes) -> list[bytes]:
    out, at = [], 0
    while at < len(sample):
        size = int.from_bytes(sample[at:at + 4], "big")
        out.append(sample[at + 4:at + 4 + size])
        at += 4 + size
    return out


@pytest.mark.parametrize(("profile", "level", "expected"), [
    ("high", "4.0", "avc1.640028"), ("main", "3.1", "avc1.4d401f"),
    ("baseline", "3.0", "avc1.42c01e")])
def test_the_codec_string_is_the_sps_profile_constraints_and_level(profile, level, expected):
    codec, packets = encode_annexb(2, global_header=True,
                                   options={"preset": "fast", "profile": profile,
                                            "level": level})
    sps = next(u for u in annexb_units(codec.extradata) if u[0] & 0x1F == 7)
    muxer = Muxer(codec, packets[0].data)
    assert muxer.codecs == expected == f"avc1.{bytes(sps[1:4]).hex()}"


def test_b_frames_keep_their_composition_offsets():
    codec, packets = encode_annexb(30, global_header=True,
                                   options={"preset": "fast", "bframes": "2"})
    assert any(p.pts != p.dts for p in packets), "libx264 made no B-frames"
    _, data = mux(codec, packets)
    _, back, decoded = read_back(data)
    assert [p.pts - p.dts for p in back] == [p.pts - p.dts for p in packets]
    assert decoded == 30


def test_time_going_backwards_still_goes_forwards_in_the_track(clip):
    codec, packets = media.demux(clip)
    again = packets[:25] + packets[:25]  # a producer that started over
    _, data = mux(codec, again)
    _, back, _ = read_back(data)
    dts = [p.dts for p in back]
    assert dts == sorted(dts) and len(set(dts)) == len(dts)


def test_codecs_mse_does_not_take_here_are_refused_clearly():
    with pytest.raises(Unplayable, match="hevc"):
        Muxer(CodecInfo("hevc", b"", (1, 90000), 320, 240))
    with pytest.raises(Unplayable, match="SPS"):
        Muxer(CodecInfo("h264", b"", (1, 90000), 320, 240), b"\x00\x00\x00\x01\x65\x88")
