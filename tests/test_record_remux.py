"""The packet remuxer (framebus.record) on packets from PyAV's own demux of real clips:
the packets a decoder publishes."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import av
import pytest

from framebus.packets.layout import CodecInfo
from framebus.record import Remuxer
from framebus.record.template import UnsupportedCodec
from framebus.testing import media
from framebus.testing.media import DemuxedPacket


def decoded(path: Path) -> int:
    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(video=0))


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return media.encode(tmp_path_factory.mktemp("clips") / "clip.mp4", 150, 320, 240, gop=25)


@pytest.mark.parametrize("suffix", [".mp4", ".mkv"])
def test_one_file_is_bit_identical(clip, tmp_path, suffix):
    codec, packets = media.demux(clip)
    rec = Remuxer(str(tmp_path / f"out{suffix}"))
    for p in packets:
        rec.add(p.data, p, codec)
    rec.close()
    out_codec, out = media.demux(tmp_path / f"out{suffix}")
    assert [p.data for p in out] == [p.data for p in packets]
    assert [p.keyframe for p in out] == [p.keyframe for p in packets]
    assert (out_codec.width, out_codec.height, out_codec.extradata) == (320, 240,
                                                                        codec.extradata)
    if suffix == ".mp4":  # the producer's time base and timing, from 0
        assert [p.pts for p in out] == [p.pts - packets[0].dts for p in packets]
    assert decoded(tmp_path / f"out{suffix}") == len(packets)


def test_starts_on_a_key_frame(clip, tmp_path):
    codec, packets = media.demux(clip)
    rec = Remuxer(str(tmp_path / "out.mp4"))
    written = [p for p in packets[10:] if rec.add(p.data, p, codec)]
    rec.close()
    assert rec.waiting_for_key == 15 and written[0].keyframe
    assert [p.data for p in media.demux(tmp_path / "out.mp4")[1]] == [p.data for p in packets[25:]]


def test_segments_lose_and_duplicate_nothing(clip, tmp_path):
    codec, packets = media.demux(clip)  # 6 s, a key frame a second
    rec = Remuxer(str(tmp_path / "seg.mp4"), segment=2.0)
    for p in packets:
        rec.add(p.data, p, codec)
    rec.close()
    assert [f.path.name for f in rec.files] == ["seg.mp4", "seg-2.mp4", "seg-3.mp4"]
    joined = [p.data for f in rec.files for p in media.demux(f.path)[1]]
    assert joined == [p.data for p in packets]
    for f in rec.files:
        first = media.demux(f.path)[1][0]
        assert first.keyframe and f.packets == 50 and decoded(f.path) == 50


def test_strftime_pattern(clip, tmp_path):
    codec, packets = media.demux(clip)
    rec = Remuxer(str(tmp_path / "cam-%Y%m%d-%H%M%S.mkv"), segment=2.0)
    wall = 1_800_000_000.0
    for i, p in enumerate(packets):
        rec.add(p.data, p, codec, wall=wall + i / 25)
    rec.close()
    names = [f.path.name for f in rec.files]
    assert names == [time.strftime("cam-%Y%m%d-%H%M%S.mkv", time.localtime(wall + s))
                     for s in (0, 2, 4)]


def test_codec_change_and_restart_start_new_files(tmp_path):
    small, bigger = tmp_path / "a.mp4", tmp_path / "b.mp4"
    media.encode(small, 50, 320, 240)
    media.encode(bigger, 50, 640, 480)
    ca, pa = media.demux(small)
    cb, pb = media.demux(bigger)
    rec = Remuxer(str(tmp_path / "out.mp4"))
    for codec, packets in ((ca, pa), (cb, pb), (cb, pb)):  # a resize, then a restart
        for p in packets:
            rec.add(p.data, p, codec)
    rec.close()
    assert len(rec.files) == 3
    sizes = [media.demux(f.path)[0] for f in rec.files]
    assert [(c.width, c.height) for c in sizes] == [(320, 240), (640, 480), (640, 480)]
    for f, packets in zip(rec.files, (pa, pb, pb)):
        assert [p.data for p in media.demux(f.path)[1]] == [p.data for p in packets]


def test_unknown_codec_is_a_clear_error(tmp_path):
    rec = Remuxer(str(tmp_path / "out.mp4"))
    with pytest.raises(UnsupportedCodec, match="cannot record 'rawvideo'"):
        rec.add(b"x", DemuxedPacket(b"x", 0, 0, 1, True), CodecInfo("rawvideo", b"", (1, 25), 2, 2))


KILLED = textwrap.dedent("""
    import sys, time, av
    from framebus.record import Remuxer
    src = av.open(sys.argv[1]); s = src.streams.video[0]
    class C: pass
    c = C(); c.name = s.codec_context.name; c.extradata = s.codec_context.extradata
    c.time_base = (s.time_base.numerator, s.time_base.denominator)
    c.width, c.height = s.codec_context.width, s.codec_context.height
    class P: pass
    rec = Remuxer(sys.argv[2])
    for n, p in enumerate(src.demux(s)):
        if not p.size: continue
        q = P(); q.pts, q.dts, q.duration, q.keyframe = p.pts, p.dts, p.duration, p.is_keyframe
        rec.add(bytes(p), q, c)
        if n == 110:
            print("written", flush=True); time.sleep(60)
""")


def test_sigkilled_recorder_leaves_a_playable_file(clip, tmp_path):
    out = tmp_path / "killed.mp4"
    proc = subprocess.Popen([sys.executable, "-c", KILLED, str(clip), str(out)],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "written"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
    _, packets = media.demux(clip)
    _, got = media.demux(out)
    # Every fragment finished before the kill: the key frames at 0, 25, 50, 75 start them,
    # the one from 100 was still open.
    assert len(got) >= 100
    assert [p.data for p in got] == [p.data for p in packets[:len(got)]]
    assert decoded(out) == len(got)


def test_the_parts_of_one_picture_make_one_sample(clip, tmp_path):
    """A picture split in two packets of one pts/dts (an RTSP camera's slices) is one
    sample of the file, its bytes the parts' joined; MP4 would refuse the second dts."""
    codec, packets = media.demux(clip)
    rec = Remuxer(str(tmp_path / "out.mp4"))
    for p in packets:
        half = len(p.data) // 2
        rec.add(p.data[:half], p, codec)
        rec.add(p.data[half:], p, codec)
    rec.close()
    assert [p.data for p in media.demux(tmp_path / "out.mp4")[1]] == [p.data for p in packets]
