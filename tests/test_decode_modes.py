"""framebus decode publishes its source's packets beside its pixels, and decodes pixels
always, on demand or key frames only; --hwaccel falls back to the CPU and says so. Real
files encoded by PyAV, a real broker and real decoder processes."""

from __future__ import annotations

import os
import re
import time
from fractions import Fraction
from pathlib import Path

import av
import pytest

import framebus
from framebus.packets import PacketSubscriber
from framebus.testing.media import encode
from tests.conftest import wait_until


def decoder(procs, source: Path, name: str, *args: str):
    return procs.framebus("-v", "decode", str(source), "--name", name, *args)


def demuxed(path: Path) -> list[tuple[bytes, int | None, int | None, bool]]:
    with av.open(str(path)) as container:
        return [(bytes(p), p.pts, p.dts, p.is_keyframe)
                for p in container.demux(video=0) if p.size]


def encode_with(path: Path, codec: str, frames: int, fps: int = 25, gop: int = 25) -> Path:
    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=fps)
        stream.width, stream.height = 320, 240
        stream.pix_fmt = "yuvj420p" if codec == "mjpeg" else "yuv420p"
        stream.time_base = Fraction(1, fps)
        if codec != "mjpeg":
            stream.options = {"g": str(gop), "keyint_min": str(gop), "sc_threshold": "0",
                              "preset": "ultrafast"}
            if codec == "libx265":
                stream.options = {"preset": "ultrafast",
                                  "x265-params": f"keyint={gop}:min-keyint={gop}:log-level=0"}
        for i in range(frames):
            image = framebus.testing.media.picture(i, 320, 240)
            frame = av.VideoFrame.from_ndarray(image, format="bgr24").reformat(
                format=stream.pix_fmt)
            frame.pts = i
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return path


def _codecs() -> list[str]:
    names = ["libx264", "mjpeg"]
    try:
        av.codec.Codec("libx265", "w")
        names.append("libx265")
    except Exception:
        pass
    return names


@pytest.mark.parametrize("codec", _codecs())
def test_packets_are_pyavs_own_demux_bit_for_bit(procs, broker, stream_name, tmp_path, codec):
    suffix = ".mkv" if codec == "mjpeg" else ".mp4"
    path = encode_with(tmp_path / f"clip{suffix}", codec, 50)
    expected = demuxed(path)
    with PacketSubscriber(stream_name, preroll=60) as sub:
        decoder(procs, path, stream_name)  # at its timing: 2 s, while the reader finds it
        got = []
        while len(got) < len(expected):
            packet = sub.recv(timeout=20)
            got.append((packet.bytes(), packet.pts, packet.dts, packet.keyframe))
        codec_info = sub.codec
    assert got == expected
    assert codec_info is not None and codec_info.width == 320 and codec_info.height == 240
    assert codec_info.name == {"libx264": "h264", "libx265": "hevc", "mjpeg": "mjpeg"}[codec]
    with av.open(str(path)) as container:
        assert codec_info.extradata == bytes(container.streams.video[0].codec_context.extradata
                                             or b"")


def _count_frames(sub, seconds: float) -> int:
    n, end = 0, time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            sub.recv(timeout=max(0.01, end - time.monotonic()))
            n += 1
        except framebus.Timeout:
            break
    return n


def _figure(name: str, figure: str, kind: str = "frames"):
    with framebus.discovery.BrokerClient() as client:
        try:
            return client.lookup(name, kind=kind).figures.get(figure)
        except framebus.StreamNotFound:
            return None


def test_demand_decodes_only_while_a_pixel_reader_is_there(procs, broker, stream_name,
                                                           tmp_path):
    path = encode(tmp_path / "clip.mp4", 250, fps=25)  # a key frame every second
    proc = decoder(procs, path, stream_name, "--decode", "demand", "--loop")
    with PacketSubscriber(stream_name) as packets:
        packets.recv(timeout=10)  # packets flow with no pixel reader at all
        wait_until(lambda: _figure(stream_name, "decoding") == 0, 10, what="no decoding")
        assert _figure(stream_name, "decode_mode") == 1
        with framebus.Subscriber(stream_name, mode="all") as sub:
            start = time.monotonic()
            sub.recv(timeout=5)
            assert time.monotonic() - start < 1.0 + 0.6, "within one GOP (and a heartbeat)"
            assert _count_frames(sub, 2.0) >= 40, "full rate while a reader is there"
        wait_until(lambda: _figure(stream_name, "decoding") == 0, 5, what="decoding to stop")
        n = 0
        end = time.monotonic() + 1.5
        while time.monotonic() < end:
            packets.recv(timeout=2)
            n += 1
        assert n >= 30, "packets keep flowing after the reader left"
    assert proc.poll() is None


def test_keyframes_mode_gives_about_one_picture_per_gop(procs, broker, stream_name, tmp_path):
    path = encode(tmp_path / "clip.mp4", 250, fps=25)
    decoder(procs, path, stream_name, "--decode", "keyframes", "--loop")
    with framebus.Subscriber(stream_name, mode="all") as sub:
        sub.recv(timeout=10)
        n = _count_frames(sub, 3.0)
    assert 2 <= n <= 4, f"{n} pictures in 3 s of a 1 s GOP"


def test_hwaccel_auto_falls_back_to_the_cpu_and_says_so(procs, broker, stream_name, tmp_path):
    path = encode(tmp_path / "clip.mp4", 25)
    proc = decoder(procs, path, stream_name, "--hwaccel", "auto", "--fast")
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "no hardware decoder here: decoding on the CPU" in err


def test_an_explicit_hwaccel_that_is_missing_is_a_clear_error(procs, broker, stream_name,
                                                              tmp_path):
    path = encode(tmp_path / "clip.mp4", 25)
    for device in ("cuda", "nosuchdevice"):
        proc = decoder(procs, path, stream_name, "--hwaccel", device)
        out, err = proc.communicate(timeout=30)
        assert proc.returncode == 1, err
        assert f"--hwaccel {device}:" in err and "use --hwaccel auto or none" in err, err


def test_corrupt_packets_still_flow_and_are_counted(procs, broker, stream_name, tmp_path):
    """Damaged bytes in a file: the packet stream carries every packet as demuxed, the
    decoder counts the corrupt ones it met and skips their frames."""
    import numpy as np

    data = bytearray(encode(tmp_path / "clip.mp4", 75, fps=25).read_bytes())
    at = len(data) * 4 // 10
    data[at:at + 3000] = np.random.default_rng(7).integers(0, 256, 3000, np.uint8).tobytes()
    damaged = tmp_path / "damaged.mp4"
    damaged.write_bytes(bytes(data))
    expected = demuxed(damaged)
    with PacketSubscriber(stream_name, preroll=60) as sub:
        proc = decoder(procs, damaged, stream_name)
        got = [sub.recv(timeout=20).bytes() for _ in expected]
    assert got == [e[0] for e in expected]
    _, err = proc.communicate(timeout=20)
    assert "corrupt packet" in err


def test_ls_and_stat_show_packets_bitrate_keyint_and_the_decode_mode(procs, broker, stream_name,
                                                                     tmp_path):
    import json

    path = encode(tmp_path / "clip.mp4", 100, fps=25)
    decoder(procs, path, stream_name, "--decode", "keyframes", "--loop")
    wait_until(lambda: (_figure(stream_name, "keyint", "packets") or 0) > 0.5
               and _figure(stream_name, "decode_mode") == 2, 15, what="the figures")
    stat = procs.framebus("stat", "--once", env={**os.environ, "COLUMNS": "300"})
    out, err = stat.communicate(timeout=20)
    assert stat.returncode == 0, err
    row = next(line for line in out.splitlines() if line.strip().startswith(stream_name))
    assert "keyframes" in row and "Mb/s" in row and re.search(r"\b(0\.9\d|1\.0\d) s\b", row), row
    ls = procs.framebus("ls", "--json")
    out, _ = ls.communicate(timeout=20)
    kinds = sorted(s["kind"] for s in json.loads(out) if s["name"] == stream_name)
    assert kinds == ["frames", "packets"]


def _packet(data: bytes, pts: int | None, key: bool) -> av.Packet:
    p = av.Packet(data)
    p.pts = p.dts = pts
    p.time_base = Fraction(1, 90000)
    p.is_keyframe = key
    return p


def test_the_parts_of_one_picture_are_joined_and_whole_ones_pass_as_they_are(tmp_path):
    """As FFmpeg's RTSP demuxer gives a two-slice key frame: two packets of one pts/dts."""
    from framebus.decoder.source import whole_pictures

    path = encode_with(tmp_path / "clip.mp4", "libx264", 3)
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        parts = [_packet(b"\0\0\0\1\x65one", 0, True), _packet(b"\0\0\0\1\x65two", 0, True),
                 _packet(b"\0\0\0\1\x41p", 3600, False), _packet(b"\0\0\0\1\x41q", 7200, False)]
        out = list(whole_pictures(parts, stream))
        assert [bytes(p) for p in out] == [b"\0\0\0\1\x65one\0\0\0\1\x65two",
                                           b"\0\0\0\1\x41p", b"\0\0\0\1\x41q"]
        assert [(p.pts, p.dts, p.is_keyframe) for p in out] == [(0, 0, True), (3600, 3600, False),
                                                               (7200, 7200, False)]
        assert out[1] is parts[2] and out[2] is parts[3]  # whole pictures: the same packets
