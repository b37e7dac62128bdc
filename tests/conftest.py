"""Fixtures: a private namespace for the suite's rings and sockets, a real broker
process, and real producer/consumer processes that are always cleaned up."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from netns import two_hosts  # noqa: F401  (fixture: two hosts in network namespaces)
from rtsp import rtsp_server, rtsp_servers  # noqa: F401  (fixtures: real RTSP servers)

from framebus.discovery import broker_answers  # noqa: F401  (tests import it from here)

# Every ring and socket the suite makes carries this prefix, so cleanup is exact
# and a developer's own streams are never touched.
PREFIX = f"framebus-test{os.getpid()}"
os.environ["FRAMEBUS_SHM_PREFIX"] = PREFIX
RUNTIME_DIR = tempfile.mkdtemp(prefix="framebus-test-run")
os.environ["FRAMEBUS_RUNTIME_DIR"] = RUNTIME_DIR

TESTS = Path(__file__).parent


def leftover_segments() -> list[str]:
    return sorted(n for n in os.listdir("/dev/shm") if n.startswith(PREFIX))


def pytest_sessionfinish(session, exitstatus):
    """Fail the run if any test left a ring behind; remove them either way."""
    left = leftover_segments()
    for name in left:
        os.unlink(f"/dev/shm/{name}")
    for path in Path(RUNTIME_DIR).glob("*"):
        path.unlink()
    os.rmdir(RUNTIME_DIR)
    if left:
        print(f"\nFAILED: shared-memory segments left behind: {left}", file=sys.stderr)
        session.exitstatus = 1


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Processes:
    """Starts real processes in their own process groups and kills them all at teardown."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen] = []

    def start(self, *args: str, **kwargs) -> subprocess.Popen:
        proc = subprocess.Popen([sys.executable, *args], start_new_session=True,
                                stdout=kwargs.pop("stdout", subprocess.PIPE),
                                stderr=kwargs.pop("stderr", subprocess.PIPE), text=True, **kwargs)
        self.procs.append(proc)
        return proc

    def framebus(self, *args: str, **kwargs) -> subprocess.Popen:
        return self.start("-m", "framebus", *args, **kwargs)

    def consumer(self, *args: str) -> subprocess.Popen:
        return self.start(str(TESTS / "consumer.py"), *args)

    def stop(self, proc: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 10) -> None:
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                pass
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()

    def close(self) -> None:
        for proc in reversed(self.procs):
            self.stop(proc)
            for stream in (proc.stdout, proc.stderr):
                if stream:
                    stream.close()


@pytest.fixture
def procs():
    p = Processes()
    try:
        yield p
    finally:
        p.close()


def wait_until(predicate, timeout: float, interval: float = 0.05, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


class BrokerProcess:
    def __init__(self, procs: Processes, address: str) -> None:
        self.procs = procs
        self.address = address
        self.proc: subprocess.Popen | None = None

    def start(self) -> BrokerProcess:
        self.proc = self.procs.framebus("-v", "broker", "--bind", self.address)
        wait_until(lambda: broker_answers(self.address), 10, what="broker to answer")
        return self

    def kill(self) -> None:
        self.procs.stop(self.proc, signal.SIGKILL)


@pytest.fixture
def broker_address(monkeypatch) -> str:
    address = f"tcp://127.0.0.1:{free_port()}"
    monkeypatch.setenv("FRAMEBUS_BROKER", address)
    return address


@pytest.fixture
def broker(procs, broker_address) -> BrokerProcess:
    """A real broker process; FRAMEBUS_BROKER points at it for the test and its children."""
    return BrokerProcess(procs, broker_address).start()


@pytest.fixture
def stream_name(request) -> str:
    """A stream name unique to the test."""
    return request.node.name.replace("[", "-").replace("]", "")[-40:].strip("_-") + "-s"


def result_of(proc: subprocess.Popen, timeout: float = 30) -> dict:
    """The JSON summary a consumer process prints last."""
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, f"consumer failed ({proc.returncode}):\n{err}"
    return json.loads(out.strip().splitlines()[-1])
