"""The example programs a new user copies from, run as the README says against a live stream."""

import os
import re
import signal
from pathlib import Path

import cv2
from conftest import leftover_segments, wait_until

import framebus

EXAMPLES = Path(__file__).parent.parent / "examples"


def run_example(procs, script, *args, env=None, timeout=30):
    proc = procs.start(str(EXAMPLES / script), *args, env=env)
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, f"{script} failed ({proc.returncode}):\n{err}"
    return out


def start_testsrc(procs, name):
    return procs.framebus("testsrc", name, "--size", "160x120", "--fps", "30")


def test_producer_and_client(procs, broker, stream_name):
    producer = procs.start(str(EXAMPLES / "producer.py"), stream_name)
    out = run_example(procs, "client.py", stream_name, "--seconds", "3")
    rates = [float(r) for r in re.findall(r"([\d.]+) fps", out)]
    assert rates and 20 < rates[-1] < 40, out
    assert "(720, 1280, 3)" in out
    procs.stop(producer, signal.SIGTERM)
    assert producer.returncode == 0
    assert "published" in producer.stdout.read()
    wait_until(lambda: not leftover_segments(), 3, what="the producer's ring to be unlinked")


def test_opencv_client_writes_blurred_jpegs(procs, broker, stream_name, tmp_path):
    start_testsrc(procs, stream_name)
    out_file = tmp_path / "blurred.jpg"
    out = run_example(procs, "opencv_client.py", stream_name, "--out", str(out_file),
                      "--seconds", "2.5", env=without_display())
    image = cv2.imread(str(out_file))
    assert image is not None and image.shape == (120, 160, 3)
    processed = int(re.search(r"processed (\d+) frames", out).group(1))
    assert processed > 30, out


def test_lowlevel_client(procs, broker, stream_name):
    start_testsrc(procs, stream_name)
    # The low-level client looks the stream up once and fails if it is not there yet.
    wait_until(lambda: _registered(stream_name), 10, what="the stream to register")
    out = run_example(procs, "lowlevel_client.py", stream_name, "--seconds", "2.5")
    reports = re.findall(r"seq \d+ slot \d+: (\d+) frames, latency [\d.]+ ms, mean [\d.]+, "
                         r"copy ok", out)
    assert reports and int(reports[-1]) > 30, out


def _registered(name):
    return any(s.name == name for s in framebus.streams())


def without_display():
    return {k: v for k, v in os.environ.items() if k != "DISPLAY"}


def test_asyncio_streams_feeds_eight_streams_into_one_task(procs, broker, stream_name):
    names = [f"{stream_name}-{i}" for i in range(8)]
    for name in names:
        procs.framebus("testsrc", name, "--size", "160x120", "--fps", "15")
    out = run_example(procs, "asyncio_streams.py", f"{stream_name}-*", "--seconds", "6")
    rates = {}
    for name, fps in re.findall(r"^(\S+): +([\d.]+) fps, latency", out, re.M):
        rates[name] = float(fps)  # the last second each stream was seen
    assert sorted(rates) == names, out
    assert all(10 < fps < 20 for fps in rates.values()), out
    assert "-- 8 streams in one task" in out
    assert re.search(r"received \d+ frames of 8 streams", out), out
