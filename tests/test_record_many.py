"""One `framebus record` process recording several streams from packets: by names or a
pattern, each into its own files and segments, all in one thread. Real broker, real
decoders, a real GStreamer RTSP server serving a pre-encoded clip at several mounts."""

from __future__ import annotations

import signal
import time

import pytest

from framebus.testing import media, nals
from framebus.testing.media import demux
from tests.conftest import wait_until

pytestmark = pytest.mark.slow


def files_of(directory):
    return sorted(directory.glob("*.mp4"), key=lambda p: (len(p.name), p.name))


def slices_of(files) -> list[bytes]:
    return [s for f in files for p in demux(f)[1] for s in nals.slices(p.data)]


def test_a_pattern_records_every_matching_stream_into_its_own_segments(broker, procs,
                                                                        stream_name, tmp_path):
    clip = media.encode(tmp_path / "clip.mp4", 150, 320, 240, gop=25)  # 6 s
    out = tmp_path / "rec"
    rec = procs.framebus("record", f"{stream_name}*", str(out / "{stream}" / "s.mp4"),
                         "--segment", "2s")
    names = [f"{stream_name}a", f"{stream_name}b"]
    decoders = [procs.framebus("decode", str(clip), "--name", n) for n in names]
    for d in decoders:
        assert d.wait(60) == 0
    procs.stop(rec, signal.SIGINT)
    err = rec.stderr.read()
    assert "one process for every stream" in err, err
    _, source = demux(clip)
    for name in names:
        files = files_of(out / name)
        assert len(files) >= 2, err
        got = [p.data for f in files for p in demux(f)[1]]
        first = [p.data for p in source].index(got[0])
        assert source[first].keyframe and got == [p.data for p in source[first:]], err


def test_several_streams_need_stream_in_the_output_and_packets(broker, procs, stream_name):
    rec = procs.framebus("record", "a", "b", "out.mp4")
    assert rec.wait(30) == 1 and "{stream}" in rec.stderr.read()
    rec = procs.framebus("record", "cam*", "{stream}.mp4", "--mode", "reencode")
    assert rec.wait(30) == 1 and "from packets only" in rec.stderr.read()
    rec = procs.framebus("record", "cam*", "{stream}.mp4", "--frames", "3")
    assert rec.wait(30) == 1 and "--frames counts one stream" in rec.stderr.read()
    rec = procs.framebus("record", "cam/*", "{stream}.mp4")
    assert rec.wait(30) == 1 and "name" in rec.stderr.read().lower()


def test_rtsp_mounts_of_a_clip_recorded_slice_for_slice(broker, procs, rtsp_servers,
                                                        stream_name, tmp_path):
    clip = media.encode(tmp_path / "clip.mp4", 100, 640, 360, gop=25)  # 4 s
    server = rtsp_servers(clip=clip, mounts=2, path="/cam")
    out = tmp_path / "rec"
    names = [f"{stream_name}{i}" for i in range(2)]
    rec = procs.framebus("record", *names, str(out / "{stream}-%H%M%S.mp4"))
    for name, url in zip(names, server.urls):
        procs.framebus("decode", url, "--name", name, "--decode", "keyframes")
    wait_until(lambda: len(list(out.glob("*.mp4"))) == 2, 30, what="both recordings")
    time.sleep(4)  # the clip plays out; its end is a camera dropping: new files follow
    procs.stop(rec, signal.SIGINT)
    err = rec.stderr.read()
    source = slices_of([clip])
    for name in names:
        files = [f for f in files_of(out) if f.name.startswith(f"{name}-")]
        assert sum(len(slices_of([f])) for f in files) >= len(source) // 2, err
        for f in files:  # each a run of the clip's own slices, bit for bit, from a key frame
            got = slices_of([f])
            k = source.index(got[0])
            assert got == source[k:k + len(got)], (f, err)
            assert demux(f)[1][0].keyframe
