"""The soak's short run (tests/soak): a whole site under faults and garbage keeps every promise.

And first, that its checking reader can tell a wrong frame at all: a soak whose checks
could not fail would prove nothing.
"""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from framebus.testing.netns import netns_available
from framebus.testing.rtsp import rtsp_available

ROOT = Path(__file__).resolve().parent.parent
# Run as modules of the package tests.soak, from the repository root.
SOAK = ("-m", "tests.soak")
READER = ("-m", "tests.soak.reader")
# Every kind of fault runs in any case (the chaos finishes its first round past the
# deadline); 50 s is for the memory judgement, which needs 8 samples over the second phase.
SHORT_RUN = float(os.environ.get("FRAMEBUS_SOAK_SECONDS", "50"))


def read_for(procs, stream: str, seconds: float, *args: str) -> dict:
    reader = procs.start(*READER, stream, *args, "--report", "0.5", cwd=ROOT)
    try:
        out, err = reader.communicate(timeout=seconds)
    except subprocess.TimeoutExpired:
        reader.terminate()
        out, err = reader.communicate(timeout=10)
    lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert lines, f"the reader printed nothing:\n{err}"
    return lines[-1]


@pytest.fixture
def clip(tmp_path):
    from framebus.testing import media

    return media.encode(tmp_path / "clip.mp4", 50, 160, 120, 25)


class Reader:
    """A checking reader whose running totals go to a file, so that they can be read while
    it runs and it can be stopped as soon as they say enough."""

    def __init__(self, procs, out: Path, stream: str, *args: str) -> None:
        self.procs, self.out = procs, out
        with open(out, "w") as f:
            self.proc = procs.start(*READER, stream, *args, "--report", "0.5", cwd=ROOT,
                                    stdout=f)

    def totals(self) -> dict | None:
        """Its last complete line of totals, if it printed one."""
        lines = [line for line in self.out.read_text().splitlines(keepends=True)
                 if line.startswith("{") and line.endswith("\n")]
        return json.loads(lines[-1]) if lines else None

    def until(self, enough, deadline: float) -> dict:
        """Its last totals once *enough* holds of them or *deadline* (monotonic) has passed."""
        while time.monotonic() < deadline and not enough(self.totals() or {}):
            time.sleep(0.1)
        self.procs.stop(self.proc)  # SIGTERM: it prints its last totals
        last = self.totals()
        assert last, f"the reader printed nothing:\n{self.proc.stderr.read()}"
        return last


#: As many frames as four seconds of either stream, which the readers once each ran for.
CHECKED = 100


def checked(totals: dict) -> bool:
    return totals.get("good", 0) >= CHECKED


def caught(totals: dict) -> bool:
    return totals.get("bad", 0) > 10 and bool(totals.get("bad_examples"))


def test_the_checking_reader_passes_right_frames_and_catches_wrong_ones(procs, broker, clip,
                                                                       stream_name, tmp_path):
    procs.framebus("decode", "testsrc", "--name", stream_name, "--size", "160x120", "--fps", "30")
    procs.framebus("decode", str(clip), "--name", stream_name + "-clip", "--loop")
    marker = ("--check", "marker", "--frames", "50", "--fps", "25")
    # All five at once, each stopped once it has checked enough (the right ones) or caught
    # enough (the wrong ones): the generous deadlines are only for a loaded machine.
    readers = [Reader(procs, tmp_path / f"reader{i}.jsonl", *args) for i, args in enumerate((
        (stream_name, "--check", "pattern", "--zero-copy"),
        (stream_name + "-clip", *marker),
        # The clip read as if it were one frame shorter: from the first loop on, every frame
        # carries another index than its time says. And the clip is not the test pattern.
        (stream_name + "-clip", "--check", "marker", "--frames", "49", "--fps", "25"),
        (stream_name + "-clip", "--check", "pattern"),
        (stream_name, "--check", "bars")))]
    deadline = time.monotonic() + 20
    right = [r.until(checked, deadline) for r in readers[:2]]
    for r in right:
        assert r["good"] > 30 and r["bad"] == 0, r
    wrong = [r.until(caught, deadline) for r in readers[2:]]
    for r in wrong:
        assert r["bad"] > 10 and r["bad_examples"], r


def test_the_bars_check_passes_a_live_camera(procs, broker, rtsp_servers, stream_name):
    camera = rtsp_servers(pattern="bars")
    procs.framebus("decode", camera.url, "--name", stream_name)
    r = read_for(procs, stream_name, 6, "--check", "bars", "--shape", "240,320,3")
    assert r["good"] > 30 and r["bad"] == 0, r


@pytest.mark.timeout(SHORT_RUN + 420)
def test_short_soak_keeps_every_promise(tmp_path):
    for ok, why in (netns_available(), rtsp_available()):
        if not ok:
            pytest.skip(f"the soak needs namespaces and the RTSP server: {why}")
    report_path = tmp_path / "soak.json"
    # Its own prefix and runtime dir: the suite's conftest sweep must not see its rings.
    env = {k: v for k, v in os.environ.items()
           if k not in ("FRAMEBUS_SHM_PREFIX", "FRAMEBUS_RUNTIME_DIR", "FRAMEBUS_BROKER")}
    run = subprocess.run([sys.executable, *SOAK, "--seconds", str(SHORT_RUN), "--seed", "7",
                          "--json", str(report_path), "--work", str(tmp_path / "work")],
                         capture_output=True, text=True, timeout=SHORT_RUN + 400, env=env,
                         cwd=ROOT)
    assert report_path.exists(), f"no report (exit {run.returncode}):\n{run.stderr[-5000:]}"
    report = json.loads(report_path.read_text())
    broken = [p for p in report["promises"] if not p["held"]]
    assert run.returncode == 0 and not broken, (
        f"exit {run.returncode}; broken: {json.dumps(broken, indent=1)}\n{run.stdout}\n"
        f"{run.stderr[-3000:]}")
    kinds = {f["kind"] for f in report["faults"]}
    expected = {"decoder_kill", "decoder_stop", "consumer_kill", "consumer_stop", "broker_kill",
                "broker_stop", "relay_kill", "relay_stop", "camera_restart", "link_cut",
                "shm_full", "fuzz_broker", "fuzz_relay", "intruder", "site_crash"}
    assert expected <= kinds, f"faults that never happened: {expected - kinds}"
    streams = {r["stream"]: r for r in report["streams"]}
    for name, r in streams.items():
        assert r["good"] > 100, (name, r)
    # The liar's lies no longer reach its local readers once the writer wakes them: a woken
    # reader takes each frame's facts from the slot table, not from the descriptors (issue 11).
    # What a reader of the descriptors does with lies is tests/test_fuzz_descriptors.py's.
    for service in ("broker", "relay"):
        assert report["fuzz"][service]["sent"] >= 100, report["fuzz"]
    assert report["crash"]["left_by_kill"], "the SIGKILL of the whole site left something"
    assert report["leftovers"] == []
