"""`framebus decode`: real H.264 encoded by PyAV, decoded by a real worker process into real
shared memory, received by real subscribers and checked by the index drawn in every frame."""

import signal
import time
from fractions import Fraction

import cv2
import numpy as np
import pytest
from conftest import leftover_segments, wait_until

import framebus
from framebus.testing import media


def decode(procs, source, name, *args):
    return procs.framebus("-v", "decode", str(source), "--name", name, *args)


def receive(name, until, timeout=20.0, mode="all"):
    """Frames of *name* as (frame, pixels copy), until *until*(frames) or the timeout."""
    got = []
    end = time.monotonic() + timeout
    with framebus.Subscriber(name, mode=mode) as sub:
        while not until(got) and time.monotonic() < end:
            try:
                frame = sub.recv(timeout=0.5)
            except framebus.Timeout:
                continue
            try:
                got.append((frame, frame.copy()))
            except framebus.FrameOverwritten:
                continue  # lapped by a fast producer: a gap, and the test says if it matters
    return got


def indices(got, fmt="bgr24"):
    return [media.marker(pixels, fmt) for _, pixels in got]


def contiguous(seq):
    return list(seq) == list(range(seq[0], seq[0] + len(seq)))


def test_a_file_plays_at_its_own_timing_every_frame_intact(procs, broker, stream_name, tmp_path):
    video = media.encode(tmp_path / "clip.mp4", 50, 320, 240, fps=25)
    worker = decode(procs, video, stream_name)
    started = time.monotonic()
    got = receive(stream_name, lambda g: g and media.marker(g[-1][1]) == 49)
    elapsed = time.monotonic() - started
    seen = indices(got)
    # Subscribing takes a moment (the broker must know the stream first): the first
    # frames may be missed, never one in the middle.
    assert seen[-1] == 49 and contiguous(seen) and len(seen) >= 25, seen
    first, _ = got[0]
    assert all(f.shape == (240, 320, 3) and f.fmt == "bgr24" for f, _ in got)
    for (frame, pixels), index in zip(got, seen):
        assert media.psnr(pixels, media.picture(index, 320, 240)) > 30
        assert frame.time == pytest.approx(index / 25, abs=1e-6)
    assert first.time_base == Fraction(1, 12800)
    assert 1.2 < elapsed < 6.0, "50 frames at 25 fps play in about 2 s, not flat out"
    assert worker.wait(10) == 0


@pytest.mark.parametrize("fmt", ["gray", "yuv420p", "rgb24"])
def test_pixel_formats_and_scaling(procs, broker, stream_name, tmp_path, fmt):
    video = media.encode(tmp_path / "clip.mp4", 40, 320, 240)
    decode(procs, video, stream_name, "--format", fmt, "--size", "480x360", "--loop")
    got = receive(stream_name, lambda g: len(g) >= 10, mode="latest")
    frame, pixels = got[-1]
    assert frame.fmt == fmt
    assert frame.shape == {"gray": (360, 480), "yuv420p": (540, 480), "rgb24": (360, 480, 3)}[fmt]
    bgr = frame.to_bgr() if frame.valid() else None
    assert bgr is not None and bgr.shape == (360, 480, 3)
    luma = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
    index = media.marker_in_luma(luma, 480, source_width=320)
    expected = cv2.resize(media.picture(index, 320, 240), (480, 360),
                          interpolation=cv2.INTER_LINEAR)
    assert media.psnr(luma, cv2.cvtColor(expected, cv2.COLOR_BGR2GRAY)) > 28
    if fmt != "gray":
        assert media.psnr(bgr, expected) > 25


def test_loop_keeps_timestamps_increasing(procs, broker, stream_name, tmp_path):
    video = media.encode(tmp_path / "clip.mp4", 10, fps=25)
    decode(procs, video, stream_name, "--loop", "--fast", "--fps", "50")
    got = receive(stream_name, lambda g: len(g) >= 30)
    times = [f.time for f, _ in got]
    assert all(b > a for a, b in zip(times, times[1:])), times
    assert set(indices(got)) == set(range(10)), "every frame of the file comes round"


def test_fps_thins_to_the_requested_rate(procs, broker, stream_name, tmp_path):
    video = media.encode(tmp_path / "clip.mp4", 100, fps=25)
    decode(procs, video, stream_name, "--fps", "5")
    got = receive(stream_name, lambda g: len(g) >= 8)
    seen = indices(got)
    steps = np.diff(seen)
    assert (steps == 5).all(), seen
    arrival = [f.timestamp_ns for f, _ in got]
    assert np.median(np.diff(arrival)) / 1e9 == pytest.approx(0.2, abs=0.05)


def test_a_resolution_change_starts_a_new_generation(procs, broker, stream_name, tmp_path):
    big = media.encode(tmp_path / "a.h264", 40, 320, 240, container_format="h264")
    small = media.encode(tmp_path / "b.h264", 40, 256, 192, first=40, container_format="h264")
    both = tmp_path / "ab.h264"
    both.write_bytes(big.read_bytes() + small.read_bytes())
    decode(procs, both, stream_name)
    got = receive(stream_name, lambda g: g and g[-1][0].shape == (192, 256, 3)
                  and media.marker(g[-1][1]) >= 70)
    shapes = [f.shape for f, _ in got]
    change = shapes.index((192, 256, 3))
    assert set(shapes[:change]) == {(240, 320, 3)} and set(shapes[change:]) == {(192, 256, 3)}
    assert got[change][0].generation == got[change - 1][0].generation + 1
    assert contiguous(indices(got)), "no frame lost or mixed across the change"
    wait_until(lambda: next(s for s in framebus.streams() if s.name == stream_name).shape
               == (192, 256, 3), 3, what="the broker to learn the new geometry")


def test_a_truncated_file_delivers_what_precedes_the_damage(procs, broker, stream_name, tmp_path):
    whole = media.encode(tmp_path / "clip.ts", 50, container_format="mpegts").read_bytes()
    cut = tmp_path / "cut.ts"
    cut.write_bytes(whole[: len(whole) * 6 // 10])
    worker = decode(procs, cut, stream_name, "--fps", "100")
    got = receive(stream_name, lambda g: worker.poll() is not None, timeout=15)
    _, err = worker.communicate(timeout=10)
    seen = indices(got)
    assert seen and contiguous(seen) and 20 <= seen[-1] < 35, seen
    assert worker.returncode in (0, 1), err


def test_corrupt_packets_are_skipped_counted_and_never_delivered(procs, broker, stream_name,
                                                                 tmp_path):
    data = bytearray(media.encode(tmp_path / "clip.mp4", 75, fps=25).read_bytes())
    at = len(data) * 4 // 10
    data[at:at + 3000] = np.random.default_rng(7).integers(0, 256, 3000, np.uint8).tobytes()
    damaged = tmp_path / "damaged.mp4"
    damaged.write_bytes(bytes(data))
    worker = decode(procs, damaged, stream_name)
    got = receive(stream_name, lambda g: worker.poll() is not None, timeout=15)
    _, err = worker.communicate(timeout=10)
    assert worker.returncode == 0, err
    assert "corrupt packet" in err and "frames skipped" in err
    seen = indices(got)
    assert seen[-1] == 74 and seen == sorted(set(seen)), seen
    for (_, pixels), index in zip(got, seen):  # what was delivered is whole, not concealed
        assert media.psnr(pixels, media.picture(index, 320, 240)) > 27, index


def test_a_source_that_cannot_be_opened_fails_with_one_clear_line(procs, broker, tmp_path):
    for source, expected in [
        (tmp_path / "missing.mp4", "no such file"),
        ("ftp://example/x", "unsupported source scheme"),
        (tmp_path, "no such file"),
    ]:
        proc = procs.framebus("decode", str(source), "--name", "x")
        _, err = proc.communicate(timeout=20)
        assert proc.returncode == 1 and expected in err, err
        assert "Traceback" not in err
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(b"\0not a video" * 1000)
    proc = procs.framebus("decode", str(garbage), "--name", "x")
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 1 and "cannot open" in err and "Traceback" not in err


def test_an_unreachable_live_source_fails_within_its_timeout(procs, broker):
    from conftest import free_port

    started = time.monotonic()
    proc = procs.framebus("decode", f"rtsp://127.0.0.1:{free_port()}/none", "--name", "x",
                          "--timeout", "1")
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 1 and "cannot open" in err, err
    assert time.monotonic() - started < 8


def test_testsrc_and_decoder_figures_reach_the_broker(procs, broker, stream_name):
    worker = decode(procs, "testsrc", stream_name, "--size", "160x120", "--fps", "40")
    with framebus.Subscriber(stream_name) as sub:
        frame = sub.recv(timeout=10)
        assert frame.shape == (120, 160, 3)
        info = wait_until(lambda: (i := next((s for s in framebus.streams()
                                              if s.name == stream_name), None))
                          and i.figures.get("decode_fps", 0) > 20 and i.subscribers == 1 and i,
                          5, what="decoder figures in the heartbeat")
        assert info.figures["decode_errors"] == 0 and info.figures["reconnects"] == 0
        assert 25 < info.fps < 55
    procs.stop(worker, signal.SIGTERM)
    assert worker.returncode == 0
    wait_until(lambda: not leftover_segments(), 3, what="the ring to be unlinked")


def test_rtsp_source_reconnects_after_the_server_dies(procs, broker, stream_name, rtsp_server):
    decode(procs, rtsp_server.url, stream_name, "--timeout", "2")
    with framebus.Subscriber(stream_name) as sub:
        before = [sub.recv(timeout=15) for _ in range(10)]
        assert before[-1].shape == (240, 320, 3)
        rtsp_server.kill()
        with pytest.raises(framebus.Timeout):  # drain what was in flight, then silence
            while True:
                sub.recv(timeout=1.0)
        rtsp_server.start()
        resumed = sub.recv(timeout=20)
        after = [sub.recv(timeout=5) for _ in range(10)]
        assert resumed.stream == stream_name and after[-1].seq > before[-1].seq
        assert after[-1].generation == before[-1].generation, "same ring, same geometry"
        info = wait_until(lambda: (i := next(s for s in framebus.streams()
                                              if s.name == stream_name))
                          and i.figures.get("reconnects", 0) >= 1 and i, 5,
                          what="the reconnect to be counted")
        assert info.alive and info.figures["decode_fps"] > 0
