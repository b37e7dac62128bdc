"""The ready-made clients (view, record, snapshot) as real processes on real streams.

Frames come either from `framebus testsrc` (the exact pattern of framebus/testsrc.py) or
from a Publisher in the test process, whose frames carry their own number in 16 black or
white blocks along the top, so a decoded video frame tells which published frame it is.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
import time
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
from conftest import wait_until

import framebus
from framebus import pixfmt
from framebus.testsrc import TestPattern

CLIENTS = Path(__file__).resolve().parent.parent / "clients"
H, W = 96, 128  # published test pictures
BLOCK = 16  # id blocks: 16x16, 8 a row, 2 rows


def start_testsrc(procs, name, size="64x48", fps="100", *extra):
    return procs.framebus("testsrc", name, "--size", size, "--fps", fps, *extra)


class Lines:
    """Collects a process's stderr lines in a thread, so a test can wait for one."""

    def __init__(self, stream) -> None:
        self.lines: list[str] = []
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream) -> None:
        for line in stream:
            self.lines.append(line)

    def has(self, text: str) -> bool:
        return any(text in line for line in self.lines)

    def wait_for(self, text: str, timeout: float = 15) -> str:
        return wait_until(lambda: next((line for line in self.lines if text in line), None),
                          timeout, what=f"{text!r} on stderr")

    def text(self) -> str:
        self._thread.join(5)
        return "".join(self.lines)


# -- pictures that say which frame they are ------------------------------------------------


def picture(k: int, h: int = H, w: int = W) -> np.ndarray:
    """BGR picture number *k*: smooth moving colours, k's bits as black/white blocks."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    image = np.empty((h, w, 3), np.uint8)
    for c in range(3):
        wave = np.sin(2 * np.pi * (x + 2 * k) / 90 + 2 * c) * np.cos(2 * np.pi * (y - k) / 70 + c)
        image[..., c] = np.clip(128 + 80 * wave, 0, 255)
    for bit, block in enumerate(id_blocks(h, w)):
        image[block] = 255 if k >> bit & 1 else 0
    return image


def id_blocks(h: int, w: int) -> list[tuple[slice, slice]]:
    """Where the bits of a picture's number go: two rows of up to 8 blocks."""
    assert h >= 2 * BLOCK and w >= BLOCK
    per_row = min(8, w // BLOCK)
    return [(slice(row * BLOCK, (row + 1) * BLOCK), slice(col * BLOCK, (col + 1) * BLOCK))
            for row in range(2) for col in range(per_row)]


def picture_number(bgr_or_gray: np.ndarray) -> int:
    blocks = id_blocks(*bgr_or_gray.shape[:2])
    return sum(1 << bit for bit, block in enumerate(blocks) if bgr_or_gray[block].mean() > 128)


def as_format(bgr: np.ndarray, fmt: str) -> np.ndarray:
    """*bgr* laid out as framebus stores *fmt* (see framebus/pixfmt.py)."""
    if fmt == "bgr24":
        return bgr
    codes = {"rgb24": cv2.COLOR_BGR2RGB, "gray": cv2.COLOR_BGR2GRAY,
             "yuv420p": cv2.COLOR_BGR2YUV_I420}
    return cv2.cvtColor(bgr, codes[fmt])


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255**2 / mse)


def decode(path: Path, fmt: str) -> list[tuple[float, np.ndarray]]:
    """(time, pixels in *fmt*'s layout) of every frame of the video file."""
    with av.open(str(path)) as container:
        return [(f.time, f.to_ndarray(format=fmt)) for f in container.decode(video=0)]


def publish_while(proc: subprocess.Popen, pub: framebus.Publisher, frame_of, period=0.02,
                  limit: float = 20, on_frame=None, until=None) -> int:
    """Publish frame_of(k) for k = 0, 1, ... until *proc* exits or until(k); returns how many."""
    k, end = 0, time.monotonic() + limit
    while proc.poll() is None and time.monotonic() < end and not (until and until(k)):
        image, pts, stamp = frame_of(k)
        pub.publish(image, pts=pts, timestamp_ns=stamp)
        if on_frame is not None:
            on_frame(k)
        k += 1
        time.sleep(period)
    return k


def summary_count(out: str) -> int:
    return int(re.search(r"(\d+) frames written", out).group(1))


# -- snapshot ------------------------------------------------------------------------------


def test_snapshot_writes_the_newest_frame_exactly(procs, broker, stream_name, tmp_path):
    start_testsrc(procs, stream_name)
    png = tmp_path / "shot.png"
    proc = procs.start("-m", "framebus.clients.snapshot", stream_name, str(png))
    out, err = proc.communicate(timeout=20)
    assert png.exists(), err
    seq = int(re.search(r"frame (\d+) of", out).group(1))
    image = cv2.imread(str(png), cv2.IMREAD_UNCHANGED)
    pattern = TestPattern((48, 64, 3))
    assert pattern.matches(image, seq), "not the frame it says it wrote"
    assert [s for s in range(256) if pattern.matches(image, s)] == [seq % 256]
    assert not list(tmp_path.glob(".*")), "temporary file left behind"


@pytest.mark.parametrize("fmt", ["rgb24", "gray", "yuv420p"])
def test_snapshot_converts_every_pixel_format_to_bgr(procs, broker, stream_name, tmp_path, fmt):
    bgr = picture(1234)
    stored = as_format(bgr, fmt)
    png = tmp_path / "shot.png"
    with framebus.Publisher(stream_name, shape=stored.shape, fmt=fmt) as pub:
        proc = procs.start(str(CLIENTS / "snapshot.py"), stream_name, str(png))
        publish_while(proc, pub, lambda k: (stored, None, None))
        out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    expected = pixfmt.to_bgr(stored, fmt)
    assert np.array_equal(cv2.imread(str(png)), expected)
    if fmt != "gray":
        assert psnr(cv2.imread(str(png)), bgr) > 30  # the right colours, not swapped


def test_snapshot_of_a_missing_stream_fails_within_its_timeout(procs, broker, stream_name,
                                                              tmp_path):
    png = tmp_path / "shot.png"
    started = time.monotonic()
    proc = procs.start("-m", "framebus.clients.snapshot", stream_name, str(png), "--timeout", "1")
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 1
    assert time.monotonic() - started < 1 + 3  # its timeout, plus starting Python
    assert f"no stream named {stream_name!r}" in err and "Traceback" not in err
    assert not png.exists()


def test_snapshot_refuses_an_unknown_extension_at_once(procs, broker_address, tmp_path):
    proc = procs.start("-m", "framebus.clients.snapshot", "cam", str(tmp_path / "shot.xyz"),
                       "--timeout", "30")
    out, err = proc.communicate(timeout=10)
    assert proc.returncode == 1 and "unknown image extension '.xyz'" in err


def test_snapshot_never_returns_a_torn_frame(procs, broker, stream_name):
    """grab_bgr against a flat-out writer into a 2-slot ring: every picture whole."""
    from framebus.clients.snapshot import grab_bgr

    start_testsrc(procs, stream_name, "128x96", "0", "--slots", "2")
    pattern = TestPattern((96, 128, 3))
    with framebus.Subscriber(stream_name) as sub:
        sub.recv(timeout=10)
        for _ in range(300):
            image, frame = grab_bgr(sub, timeout=5)
            assert pattern.matches(image, frame.seq), f"torn or wrong frame {frame.seq}"
        print(f"{sub.received - 301} conversions thrown away as overwritten")


# -- record --------------------------------------------------------------------------------


def pts_of(k: int) -> int:
    """25 fps with every fourth pts number missing: 0 1 2 4 5 6 8 ..."""
    return k + k // 3


@pytest.mark.parametrize("fmt, clock", [("yuv420p", "pts"), ("bgr24", "timestamp_ns"),
                                         ("gray", "pts")])
def test_record_keeps_the_frames_timing_and_content(procs, broker, stream_name, tmp_path,
                                                   fmt, clock):
    mp4 = tmp_path / "rec.mp4"
    stored = {}
    base_ns = time.time_ns()

    def frame_of(k):
        stored[k] = as_format(picture(k), fmt)
        if clock == "pts":
            return stored[k], pts_of(k), None
        return stored[k], None, base_ns + pts_of(k) * 40_000_000  # the same gaps, in ns

    time_base = Fraction(1, 25) if clock == "pts" else None
    shape = as_format(picture(0), fmt).shape
    with framebus.Publisher(stream_name, shape=shape, fmt=fmt, slots=64,
                            time_base=time_base) as pub:
        proc = procs.start("-m", "framebus.clients.record", stream_name, str(mp4),
                           "--frames", "25")
        publish_while(proc, pub, frame_of)
        out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert summary_count(out) == 25 and f"timed by {clock}" in err

    decoded = decode(mp4, fmt)
    assert len(decoded) == 25
    luma = (lambda a: a[:H]) if fmt == "yuv420p" else (lambda a: a)
    ks = [picture_number(luma(pixels)) for _, pixels in decoded]
    assert ks == sorted(set(ks)) and all(k in stored for k in ks), ks
    t0, k0 = decoded[0][0], ks[0]
    assert t0 == pytest.approx(0, abs=1e-6)
    for (t, pixels), k in zip(decoded, ks):
        assert t - t0 == pytest.approx((pts_of(k) - pts_of(k0)) / 25, abs=1e-6), (k, t)
        assert psnr(pixels, stored[k]) > 30, f"frame {k}: {psnr(pixels, stored[k]):.1f} dB"


def test_record_continues_in_a_new_part_when_the_geometry_changes(procs, broker, stream_name,
                                                                 tmp_path):
    """64x48 then an odd 97x65 (cropped to 96x64): two files, each timed from its start."""
    mp4 = tmp_path / "rec.mp4"
    stored, state = {}, {"shape": (48, 64, 3)}
    # 8 slots: a recorder slow to start reads from the oldest frame in the ring (mode all), and
    # must not find all its 30 frames there before the geometry changes.
    with framebus.Publisher(stream_name, shape=(48, 64, 3), slots=8,
                            time_base=Fraction(1, 25)) as pub:
        proc = procs.start("-m", "framebus.clients.record", stream_name, str(mp4),
                           "--frames", "30")
        stderr = Lines(proc.stderr)
        # Publishing only once the recorder is about to subscribe: started earlier, at 50
        # frames a second into 64 slots, it found its 30 frames all in the ring's history,
        # before the geometry changed.
        wait_until(lambda: stderr.has("re-encoding mode"), 20, what="the recorder's mode")

        def frame_of(k):
            h, w = state["shape"][:2]
            stored[k] = picture(k, h, w)
            return stored[k], pts_of(k), None

        def on_frame(k):
            if state["shape"] == (48, 64, 3) and k > 5 and stderr.has("recording"):
                pub.reconfigure((65, 97, 3))
                state["shape"] = (65, 97, 3)

        publish_while(proc, pub, frame_of, on_frame=on_frame)
        proc.wait(20)
    out = proc.stdout.read()
    err = stderr.text()
    assert proc.returncode == 0, err
    part2 = tmp_path / "rec-part2.mp4"
    assert "cropped to 96x64" in err and str(part2) in err
    first, second = decode(mp4, "bgr24"), decode(part2, "bgr24")
    assert len(first) + len(second) == summary_count(out) == 30
    assert first[0][1].shape == (48, 64, 3) and second[0][1].shape == (64, 96, 3)
    for frames in (first, second):
        ks = [picture_number(pixels) for _, pixels in frames]
        assert ks == sorted(set(ks))
        for (t, pixels), k in zip(frames, ks):
            assert t == pytest.approx((pts_of(k) - pts_of(ks[0])) / 25, abs=1e-6)
            assert psnr(pixels, stored[k][:pixels.shape[0], :pixels.shape[1]]) > 30


def test_record_keeps_time_moving_forward_across_a_producer_restart(procs, broker, stream_name,
                                                                   tmp_path):
    """The second producer counts pts from 0 again: its frames go after the first's."""
    mp4 = tmp_path / "rec.mp4"
    proc = procs.start("-m", "framebus.clients.record", stream_name, str(mp4), "--frames", "24")
    stderr = Lines(proc.stderr)
    stored = {}

    def frame_of(k):
        stored[k] = picture(k, 48, 64)
        return stored[k], pts_of(k % 100), None  # the second producer starts at k = 100

    recording_since = {}

    def until(k):  # six frames after the recorder took its first
        if not recording_since and stderr.has("recording"):
            recording_since["k"] = k
        return bool(recording_since) and k >= recording_since["k"] + 6

    # A small ring for the first producer: the recorder reads in mode all, from the oldest
    # frame still in the ring, and a recorder slow to start must not find its 24 frames there.
    with framebus.Publisher(stream_name, shape=(48, 64, 3), slots=8,
                            time_base=Fraction(1, 25)) as pub:
        publish_while(proc, pub, frame_of, until=until)
    with framebus.Publisher(stream_name, shape=(48, 64, 3), slots=64,
                            time_base=Fraction(1, 25)) as pub:
        publish_while(proc, pub, lambda k: frame_of(100 + k))
    proc.wait(20)
    assert proc.returncode == 0, stderr.text()
    assert "does not follow the previous frame" in stderr.text()
    decoded = decode(mp4, "bgr24")
    ks = [picture_number(pixels) for _, pixels in decoded]
    times = [t for t, _ in decoded]
    assert len(decoded) == 24 and ks == sorted(ks) and ks[0] < 100 <= ks[-1], ks
    assert all(b > a for a, b in zip(times, times[1:])), times
    for i in range(1, len(ks)):
        if (ks[i - 1] < 100) == (ks[i] < 100):  # same producer: its own pts
            assert times[i] - times[i - 1] == pytest.approx(
                (pts_of(ks[i] % 100) - pts_of(ks[i - 1] % 100)) / 25, abs=1e-6)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_record_finishes_a_playable_file_when_stopped(procs, broker, stream_name, tmp_path, sig):
    start_testsrc(procs, stream_name)
    mp4 = tmp_path / "rec.mp4"
    proc = procs.start(str(CLIENTS / "record.py"), stream_name, str(mp4))
    stderr = Lines(proc.stderr)
    stderr.wait_for("recording")
    time.sleep(0.5)
    os.kill(proc.pid, sig)
    proc.wait(10)
    out = proc.stdout.read()
    assert proc.returncode == 0, stderr.text()
    assert f"stopped by {signal.Signals(sig).name}" in out
    decoded = decode(mp4, "bgr24")
    assert len(decoded) == summary_count(out) > 10
    times = [t for t, _ in decoded]
    assert times == sorted(times) and times[-1] > 0.2
    assert decoded[0][1].shape == (48, 64, 3)


def test_record_refuses_an_unknown_codec_at_once(procs, broker_address, tmp_path):
    proc = procs.start("-m", "framebus.clients.record", "cam", str(tmp_path / "rec.mp4"),
                       "--codec", "nosuchcodec")
    out, err = proc.communicate(timeout=10)
    assert proc.returncode == 1 and "no encoder 'nosuchcodec'" in err
    assert not (tmp_path / "rec.mp4").exists()


# -- view ----------------------------------------------------------------------------------


def _has_gui() -> bool:
    return "GUI:                           NONE" not in cv2.getBuildInformation()


@pytest.mark.parametrize("display", [None, ":97"], ids=["no-display", "no-gui"])
def test_view_without_a_display_keeps_a_snapshot_and_stops_after_seconds(
        procs, broker, stream_name, tmp_path, display):
    if display and _has_gui():
        pytest.skip("this OpenCV has a GUI: a fake $DISPLAY would not fall back")
    start_testsrc(procs, stream_name)
    png = tmp_path / "view.png"
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    if display:
        env["DISPLAY"] = display
    started = time.monotonic()
    proc = procs.start("-m", "framebus.clients.view", stream_name, "--snapshot", str(png),
                       "--every", "0.3", "--seconds", "2", env=env)
    out, err = proc.communicate(timeout=20)
    elapsed = time.monotonic() - started
    assert proc.returncode == 0, out + err
    assert 2 <= elapsed < 2 + 3
    notice = "no display" if display is None else "no GUI support"
    assert err.count(notice) == 1 and err.count(str(png)) == 1, err
    written = int(re.search(r"(\d+) snapshots written", out).group(1))
    assert written >= 2  # every 0.3 s, for what is left of 2 s once the first frame came
    image = cv2.imread(str(png), cv2.IMREAD_UNCHANGED)
    pattern = TestPattern((48, 64, 3))
    assert any(pattern.matches(image, seq) for seq in range(256)), "not a whole frame of the stream"
