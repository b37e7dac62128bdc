"""A process of another Unix user, on the same host, against a live stream (issue 14 §2).

The promise: it cannot read a stream it was not given, cannot replace or fake one, and
cannot make the broker forget one. The intruder is a real process of a real second user,
made with useradd for the test (tests/intruder.py); the victim is a real producer.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest
from conftest import wait_until

import framebus
from framebus.discovery import BrokerClient
from framebus.testing.users import system_group, system_user

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root, to create a user")

USER = "fbintruder"
GROUP = "fbviewers"
INTRUDER = Path(__file__).with_name("intruder.py")
VIEWER = Path(__file__).with_name("viewer.py")
ROUNDS = 100


@pytest.fixture(scope="module")
def other_user():
    """A second Unix user, created for these tests and removed after them."""
    with system_user(USER) as ids:
        yield ids


@pytest.fixture(scope="module")
def viewers_group():
    """A group to grant streams to, created for these tests and removed after them."""
    with system_group(GROUP) as gid:
        yield gid


def run_viewer(user: tuple[int, int], groups: list[int], stream: str) -> dict:
    uid, gid = user
    done = subprocess.run([sys.executable, str(VIEWER), str(uid), str(gid),
                           ",".join(map(str, groups)), stream], capture_output=True, text=True,
                          timeout=60, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.splitlines()[-1])


def run_intruder(user: tuple[int, int], stream: str) -> dict[str, dict[str, int]]:
    uid, gid = user
    done = subprocess.run([sys.executable, str(INTRUDER), str(uid), str(gid), stream,
                           str(ROUNDS)], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.splitlines()[-1])


def test_another_user_can_neither_read_replace_nor_forget_a_live_stream(procs, broker,
                                                                        stream_name,
                                                                        other_user):
    procs.framebus("testsrc", stream_name, "--size", "64x48", "--fps", "50")
    wait_until(lambda: _alive(stream_name), 10, what="the producer to register")
    with BrokerClient() as client:
        victim = client.lookup(stream_name)
    seen, stop = [], threading.Event()

    def look() -> None:  # what every subscriber would be told, all along
        with BrokerClient() as client:
            while not stop.is_set():
                seen.append(client.lookup(stream_name).token)
                time.sleep(0.005)

    watcher = threading.Thread(target=look)
    watcher.start()
    try:
        results = run_intruder(other_user, stream_name)
    finally:
        stop.set()
        watcher.join(5)
    assert set(results) >= {"map the victim's ring", "replace it claiming its pid, token and ring",
                            "unregister it", "fake a stream of another host"}
    accepted = {what: counts for what, counts in results.items() if "accepted" in counts}
    assert not accepted, accepted
    assert all(sum(counts.values()) == ROUNDS for counts in results.values()), results
    # Nothing lost: every lookup meanwhile named the victim's own ring, it is still listed
    # alive, and its frames still come.
    assert len(seen) >= 20 and set(seen) == {victim.token}, (len(seen), set(seen))
    with BrokerClient() as client:
        now = client.lookup(stream_name)
        assert now.alive and now.token == victim.token and now.pid == victim.pid
        assert not any(s.name == "ghost" for s in client.streams())
    with framebus.Subscriber(stream_name) as sub:
        frame = sub.recv(timeout=5)
        assert frame.copy().shape == (48, 64, 3)


def test_a_ring_of_another_user_is_not_registered_for_a_pid_of_ours(procs, broker,
                                                                   stream_name, other_user):
    """The broker believes a ring only from the user who runs the pid it names."""
    procs.framebus("testsrc", stream_name, "--size", "64x48", "--fps", "50")
    wait_until(lambda: _alive(stream_name), 10, what="the producer to register")
    results = run_intruder(other_user, stream_name)
    for what in ("replace it claiming its pid, with my ring",
                 "replace it with a ring forged to claim its pid"):
        assert results[what] == {"refused: AccessDenied": ROUNDS}, (what, results[what])
    ghost = results["fake a stream of another host"]
    assert ghost == {"refused: AccessDenied": ROUNDS}, ghost


@pytest.fixture
def granted_runtime_dir(monkeypatch):
    """A runtime directory of its own for the producers of a test that shares them with a
    group: the suite's stays owner-only, as the other tests expect."""
    path = tempfile.mkdtemp(prefix="framebus-granted-")
    monkeypatch.setenv("FRAMEBUS_RUNTIME_DIR", path)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_a_group_granted_with_framebus_group_reads_the_streams_and_no_one_else(
        granted_runtime_dir, procs, broker, stream_name, other_user, viewers_group,
        monkeypatch):
    """FRAMEBUS_GROUP=fbviewers for the producer: a member of the group subscribes (read-only,
    as anyone); the same user without the group does not."""
    monkeypatch.setenv("FRAMEBUS_GROUP", GROUP)
    procs.framebus("testsrc", stream_name, "--size", "64x48", "--fps", "50")
    wait_until(lambda: _alive(stream_name), 10, what="the producer to register")
    granted = run_viewer(other_user, [viewers_group], stream_name)
    assert granted.get("shape") == [48, 64, 3] and granted["writeable"] is False, granted
    refused = run_viewer(other_user, [], stream_name)
    # It cannot map the ring, and is told so at once rather than left to time out.
    assert refused.get("error", "").startswith("RingNotReadable"), refused
    assert "FRAMEBUS_GROUP" in refused["error"], refused


def _alive(name: str) -> bool:
    try:
        with BrokerClient() as client:
            return client.lookup(name).alive
    except framebus.StreamNotFound:
        return False
