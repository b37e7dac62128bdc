"""Fixtures: a private namespace for the suite's rings and sockets, a real broker
process, real producer/consumer processes that are always cleaned up, and the suite's
pytest face of framebus.testing: two hosts in network namespaces, real RTSP servers."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from framebus.discovery import broker_answers  # noqa: F401  (tests import it from here)
from framebus.support import children
from framebus.testing import netns, rtsp

# Every ring and socket the suite makes carries this prefix, so cleanup is exact
# and a developer's own streams are never touched.
PREFIX = f"framebus-test{os.getpid()}"
os.environ["FRAMEBUS_SHM_PREFIX"] = PREFIX
RUNTIME_DIR = tempfile.mkdtemp(prefix="framebus-test-run")
os.environ["FRAMEBUS_RUNTIME_DIR"] = RUNTIME_DIR

TESTS = Path(__file__).parent


def leftover_segments() -> list[str]:
    return sorted(n for n in os.listdir("/dev/shm") if n.startswith(PREFIX))


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: takes seconds to tens of seconds (deselect with "
                                       "-m 'not slow')")


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

    def stop(self, proc: subprocess.Popen, sig: int = signal.SIGTERM,
             timeout: float = 10) -> int | None:
        """*sig* to *proc*'s process group, SIGKILL after *timeout*, reaped; its exit status."""
        return children.stop(proc, timeout, sig)

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

    def start(self, *args: str) -> BrokerProcess:
        # Its log to a file: with -v it says a line per registration, and a pipe nobody
        # reads would fill after a few hundred and stall it.
        self.log = tempfile.TemporaryFile("w+")  # noqa: SIM115 (lives as long as the broker)
        self.proc = self.procs.framebus("-v", "broker", "--bind", self.address, *args,
                                        stderr=self.log)
        wait_until(lambda: broker_answers(self.address), 10, what="broker to answer")
        return self

    def kill(self) -> None:
        self.procs.stop(self.proc, signal.SIGKILL)

    def logged(self) -> str:
        self.log.seek(0)
        return self.log.read()


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
def trusting_broker(procs, broker_address) -> BrokerProcess:
    """A broker that believes loopback clients unproven (--trust-loopback): for tests that
    register simulated producers, with no ring behind them or on other hosts."""
    return BrokerProcess(procs, broker_address).start("--trust-loopback")


@pytest.fixture
def stream_name(request) -> str:
    """A stream name unique to the test."""
    return request.node.name.replace("[", "-").replace("]", "")[-40:].strip("_-") + "-s"


def result_of(proc: subprocess.Popen, timeout: float = 30) -> dict:
    """The JSON summary a consumer process prints last."""
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, f"consumer failed ({proc.returncode}):\n{err}"
    return json.loads(out.strip().splitlines()[-1])


# -- two hosts (framebus.testing.netns) --------------------------------------------------------


def require_netns() -> None:
    """Skips the calling test, saying why, when this machine cannot make the hosts."""
    ok, why = netns.netns_available()
    if not ok:
        pytest.skip(why)


@pytest.fixture
def two_hosts() -> Iterator[tuple[netns.Host, netns.Host]]:
    """Two fresh hosts (a, b) joined by a wire; skips where namespaces cannot be made."""
    require_netns()
    with netns.TwoHosts() as hosts:
        yield hosts.a, hosts.b


# -- RTSP servers (framebus.testing.rtsp) ------------------------------------------------------


def require_rtsp() -> None:
    """Skips the calling test, with the reason, when the RTSP server cannot run here."""
    ok, why = rtsp.rtsp_available()
    if not ok:
        pytest.skip(f"no RTSP server: {why}. `make test` as root installs it, or: "
                    f"apt-get install --no-install-recommends {rtsp.DEBIAN_PACKAGES}")


@pytest.fixture
def rtsp_servers() -> Iterator[rtsp.RtspServers]:
    """A factory of started RTSP servers: `rtsp_servers(size=(640, 480), fps=30)`."""
    require_rtsp()
    servers = rtsp.RtspServers()
    try:
        yield servers
    finally:
        servers.close()


@pytest.fixture
def rtsp_server() -> Iterator[rtsp.RtspServer]:
    """A started RTSP server: 320x240 at 25 fps, H.264, at `rtsp_server.url`."""
    require_rtsp()
    server = rtsp.RtspServer()
    try:
        yield server.start()
    finally:
        server.close()
