"""What the fuzz tests share (tests/test_fuzz_broker.py, tests/test_fuzz_relay.py): the
Hypothesis settings, real services started with their logs in files, a real stream read and
checked while the fuzzing runs, and fake registrations as anyone who can reach the broker may
make them."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

from conftest import wait_until
from hypothesis import HealthCheck, settings

import framebus
from framebus import BrokerClient, config
from framebus.testsrc import TestPattern

#: A few hundred messages per service: each is one round trip, and the generation is the
#: slower part. No database: a CI run must not depend on what an earlier one found.
FUZZ = settings(max_examples=250, deadline=None, database=None,
                suppress_health_check=list(HealthCheck))


# -- real processes, logging to files -----------------------------------------------------------

def start_service(procs, log: Path, *args: str):
    """`framebus -vv ARGS` (every refusal at debug: at warning they are throttled), its log to
    *log* (a pipe nobody reads would fill and stall it)."""
    env = {**os.environ, "PYTHONIOENCODING": "utf-8"}
    with open(log, "w") as f:
        return procs.framebus("-vv", *args, stderr=f, env=env)  # each refusal at debug


def start_testsrc(procs, name: str):
    return procs.framebus("testsrc", name, "--size", "32x24", "--fps", "100")


def logged(log: Path, reason: str) -> bool:
    return reason in log.read_text(encoding="utf-8", errors="replace")


class Watch(threading.Thread):
    """Reads a real stream while the fuzzing runs, and checks it: every frame by content,
    the longest wait between two frames, and the stream listed alive at the broker."""

    def __init__(self, name: str, transport: str) -> None:
        super().__init__(daemon=True)
        self.name, self.transport = name, transport
        self.good = self.bad = self.unlisted = 0
        self.longest_gap = 0.0
        self.error: BaseException | None = None
        self._stopping = threading.Event()

    def run(self) -> None:
        try:
            with framebus.Subscriber(self.name, transport=self.transport) as sub, \
                    BrokerClient(timeout=1.0) as broker:
                last, next_check = None, 0.0
                while not self._stopping.is_set():
                    took = self._take(sub)
                    now = time.monotonic()
                    if last is not None:
                        self.longest_gap = max(self.longest_gap, now - last)
                    last = now if took else last
                    if last is not None and now >= next_check:
                        self.unlisted += not broker.lookup(self.name).alive
                        next_check = now + 0.25
        except Exception as exc:  # reported by check()
            self.error = exc

    def _take(self, sub) -> bool:
        """Receive a frame and check it; whether one came."""
        try:
            frame = sub.recv(timeout=0.2)
            pixels = frame.copy()
        except framebus.Timeout:
            return False
        except framebus.FrameOverwritten:
            return True  # lapped while copied: it came, and was never taken for good
        ok = TestPattern(pixels.shape).matches(pixels, frame.seq)
        self.good += ok
        self.bad += not ok
        return True

    def __enter__(self) -> Watch:
        self.start()
        wait_until(lambda: self.good >= 3 or self.error, 15, what=f"frames of {self.name}")
        assert self.error is None, self.error
        return self

    def __exit__(self, *exc) -> None:
        self._stopping.set()
        self.join(5)

    def check(self) -> None:
        assert self.error is None, f"the subscriber failed: {self.error!r}"
        assert self.bad == 0, f"{self.bad} frames of {self.good + self.bad} were wrong"
        assert self.longest_gap < 1.5, f"frames stopped for {self.longest_gap:.1f} s"
        assert self.unlisted == 0, "the producer was not listed alive throughout"


def register_fake(client: BrokerClient, name: str, host: str = "elsewhere",
                  endpoint: str | None = None) -> None:
    """Register a stream with no producer behind it: as anyone who can reach the broker may."""
    client.request("register", name=name, host=host, pid=1,
                   segment=f"/{config.shm_prefix()}.{name}",
                   endpoint=endpoint or f"ipc:///nonexistent/{name}", token=os.urandom(16),
                   secret=os.urandom(16), generation=0, shape=[4, 4, 3], dtype="|u1",
                   fmt="bgr24", slots=8)


def fill(address: str, n: int, host: str) -> list[tuple[str, bytes, bytes]]:
    """Register *n* streams with no producer behind them; their names, tokens and secrets."""
    fakes = [(f"fake{i}", os.urandom(16), os.urandom(16)) for i in range(n)]
    with BrokerClient(address) as client:
        for name, token, secret in fakes:
            client.request("register", name=name, host=host, pid=1,
                           segment=f"/{config.shm_prefix()}.{name}",
                           endpoint=f"ipc:///nonexistent/{name}", token=token, secret=secret,
                           generation=0, shape=[4, 4, 3], dtype="|u1", fmt="bgr24", slots=8)
    return fakes


def listed_alive(address: str, name: str) -> bool:
    try:
        with BrokerClient(address) as client:
            return client.lookup(name).alive
    except framebus.StreamNotFound:
        return False
