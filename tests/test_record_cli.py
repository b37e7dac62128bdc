"""framebus record end to end: a real broker, a real decoder publishing a real clip's
packets, the recorder as a process; the files compared with PyAV's demux of the clip."""

from __future__ import annotations

import signal
import time

import pytest
from test_record_remux import decoded

from framebus.testing import media
from framebus.testing.media import demux

pytestmark = pytest.mark.slow


def test_packet_mode_segments_are_the_clips_packets(broker, procs, stream_name, tmp_path):
    clip = media.encode(tmp_path / "clip.mp4", 200, 320, 240, gop=25)  # 8 s at 25 fps
    out = tmp_path / "rec" / "cam.mp4"
    out.parent.mkdir()
    rec = procs.framebus("record", stream_name, str(out), "--segment", "2s")
    dec = procs.framebus("decode", str(clip), "--name", stream_name)
    assert dec.wait(60) == 0
    procs.stop(rec, signal.SIGINT)
    err = rec.stderr.read()
    assert "packet mode" in err or "from packets" in err, err
    files = sorted(out.parent.glob("cam*.mp4"), key=lambda p: (len(p.name), p.name))
    assert len(files) >= 3, err
    _, source = demux(clip)
    got = [p for f in files for p in demux(f)[1]]
    first = [p.data for p in source].index(got[0].data)  # it started at a key frame
    assert source[first].keyframe
    assert [p.data for p in got] == [p.data for p in source[first:]], err
    for f in files:
        assert demux(f)[1][0].keyframe and decoded(f) == len(demux(f)[1])


def test_frames_ends_a_packet_recording_after_that_many_pictures(broker, procs, stream_name,
                                                                 tmp_path):
    clip = media.encode(tmp_path / "clip.mp4", 100, 320, 240, gop=25)  # 4 s at 25 fps
    out = tmp_path / "thirty.mp4"
    rec = procs.framebus("record", stream_name, str(out), "--frames", "30", "--mode",
                         "packets")
    dec = procs.framebus("decode", str(clip), "--name", stream_name)
    assert rec.wait(60) == 0, rec.stderr.read()
    assert "30 frames recorded" in rec.stderr.read()
    procs.stop(dec)
    _, source = demux(clip)
    got = [p.data for p in demux(out)[1]]
    first = [p.data for p in source].index(got[0])
    assert source[first].keyframe and got == [p.data for p in source[first:first + 30]]
    assert decoded(out) == 30


def test_a_stream_without_packets_is_reencoded_and_says_so(broker, procs, stream_name,
                                                           tmp_path):
    src = procs.framebus("testsrc", stream_name, "--size", "160x120")
    out = tmp_path / "t.mp4"
    rec = procs.framebus("record", stream_name, str(out), "--frames", "10")
    assert rec.wait(60) == 0, rec.stderr.read()
    assert "re-encoding mode" in rec.stderr.read()
    procs.stop(src)
    assert decoded(out) == 10


def test_bad_period_and_unwritable_path_are_clear_errors(broker, procs, stream_name):
    rec = procs.framebus("record", stream_name, "/nonexistent/dir/x.mp4", "--mode", "packets")
    assert rec.wait(30) == 1 and "cannot write" in rec.stderr.read()
    rec = procs.framebus("record", stream_name, "x.mp4", "--mode", "packets",
                         "--segment", "ten")
    assert rec.wait(30) == 1 and "expected a period" in rec.stderr.read()


def test_pre_roll_starts_with_what_the_ring_still_has(broker, procs, stream_name, tmp_path):
    clip = media.encode(tmp_path / "clip.mp4", 250, 320, 240, gop=25)  # 10 s
    dec = procs.framebus("decode", str(clip), "--name", stream_name)
    time.sleep(4)  # about 3 s of packets in the ring before the recorder starts
    out = tmp_path / "pre.mp4"
    rec = procs.framebus("record", stream_name, str(out), "--pre", "10s", "--duration", "1")
    assert rec.wait(60) == 0, rec.stderr.read()
    procs.stop(dec)
    _, source = demux(clip)
    got = demux(out)[1]
    assert got[0].data == source[0].data  # from the clip's first key frame, seconds back
    assert [p.data for p in got] == [p.data for p in source[:len(got)]]
