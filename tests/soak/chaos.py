"""The faults of the soak (tests/soak), one at a time, chosen by a seeded random generator.

Each fault breaks something, ends (the process is killed, or continued, the camera is back,
the room in /dev/shm is given back), and is then given time to heal: the chaos waits until
every consumer has frames again, or its limit has passed, before the next. So each gap a
consumer sees belongs to one fault, and each fault is judged against its own promise:

    decoder_kill    SIGKILL a decoder: `up` has it back within 5 s, its readers 2 s later
    broker_kill     SIGKILL the broker: back within 5 s; frames never stop meanwhile
    relay_kill      SIGKILL the relay: back within 5 s, remote readers 2 s later
    *_stop          SIGSTOP for up to 3 s, then SIGCONT: frames again within 2 s
    consumer_kill   SIGKILL a reader; a new one has frames within 5 s of its start
    camera_restart  the RTSP server dies, and is back after up to 4 s: the camera decoder
                    reconnects on its own (at its backoff), its readers have frames again
    link_cut        the wire between the hosts goes down for up to 3 s
    shm_full        /dev/shm filled, then a decoder killed: it cannot make its ring, says
                    how much room it needs, and comes back once the room is given back
    fuzz_broker,    malformed, truncated, oversized and random requests (hypothesis, seeded):
    fuzz_relay      each refused or cut, none unanswered; frames never stop meanwhile
    intruder        a process of another Unix user tries to read, replace, fake and forget
                    the witness stream (tests/soak/intruder.py): all refused, nothing lost

The first phase runs every kind once, in a random order (to its end, even past the
deadline), then more at random; after it,
the broker, the relay, the witness decoder and the witness readers are no longer killed
(only stopped), so that their memory and descriptors can be judged over a long stretch.
"""

from __future__ import annotations

import json
import logging
import os
import random
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from . import intruder
from .agents import ROOT, module
from .site import (
    BROKER_PORT,
    FILE_STREAMS,
    PYTHON,
    RELAY_PORT,
    STREAMS,
    WITNESS_STREAM,
    Site,
)

log = logging.getLogger("soak")

BACK_WITHIN = 5.0  # a killed service is running and registered again within this
RESUME_WITHIN = 2.0  # and its readers have frames again within this, after it is back
NEW_READER_WITHIN = 5.0  # a reader started afresh has its first frame within this
CAMERA_WITHIN = 12.0  # the decoder's reconnect backoff (at most 10 s) plus RESUME_WITHIN
FUZZ_COUNT = 150  # messages per fuzz fault
MAX_STOP = 3.0
FIRST_ROUND_RETRIES = 5  # times a first-round kind is tried again when it had no target


@dataclass
class Fault:
    """One fault: what was done, when it ended, and how the site came back from it."""

    kind: str
    target: str
    start: float
    end: float = 0.0
    #: Seconds after `end` until the killed service ran and was registered again.
    back: float | None = None
    #: Every reader must have frames again within this long after `end`.
    limit: float = RESUME_WITHIN
    recovery: dict[str, float | None] = field(default_factory=dict)
    detail: dict = field(default_factory=dict)
    broken: list[str] = field(default_factory=list)

    @property
    def worst(self) -> tuple[str, float | None]:
        """The reader that took longest to have frames again, and how long (None: never)."""
        if not self.recovery:
            return "-", 0.0
        never = [name for name, s in self.recovery.items() if s is None]
        if never:
            return never[0], None
        name = max(self.recovery, key=lambda n: self.recovery[n])
        return name, self.recovery[name]


class Chaos:
    """Runs faults until *deadline*; ``faults`` is what happened."""

    def __init__(self, site: Site, seed: int, deadline: float, second_phase_at: float,
                 other_user: tuple[int, int] | None = None) -> None:
        self.site = site
        self.other_user = other_user
        #: The intruder's attempts over the run: tried, refused, accepted.
        self.intrusions: dict[str, int] = {"tried": 0, "refused": 0, "accepted": 0}
        self.rng = random.Random(seed)
        self.deadline = deadline
        self.second_phase_at = second_phase_at
        self.faults: list[Fault] = []
        self.fuzz: dict[str, dict[str, int]] = {}
        self._kinds: dict[str, tuple[int, Callable[[], Fault | None]]] = {
            "decoder_kill": (3, self.decoder_kill), "decoder_stop": (2, self.decoder_stop),
            "consumer_kill": (2, self.consumer_kill), "consumer_stop": (2, self.consumer_stop),
            "broker_kill": (1, self.broker_kill), "broker_stop": (1, self.broker_stop),
            "relay_kill": (1, self.relay_kill), "relay_stop": (1, self.relay_stop),
            "camera_restart": (1, self.camera_restart), "link_cut": (1, self.link_cut),
            "shm_full": (1, self.shm_full),
            "fuzz_broker": (1, lambda: self.fuzz_service("broker")),
            "fuzz_relay": (1, lambda: self.fuzz_service("relay")),
            "intruder": (1, self.intruder),
        }
        self._first_round = list(self._kinds)
        self.rng.shuffle(self._first_round)
        self._misses: dict[str, int] = {}

    @property
    def second_phase(self) -> bool:
        return not self._first_round and time.monotonic() >= self.second_phase_at

    def run(self, on_fault: Callable[[Fault], None] = lambda f: None) -> None:
        # The first round runs to its end even past the deadline: so a short run, too, has
        # every kind of fault, however long each one took to heal on this machine.
        while self._first_round or time.monotonic() < self.deadline - 2:
            time.sleep(self.rng.uniform(0.5, 2.0))
            first_round = bool(self._first_round)
            kind = self._next_kind()
            fault = self._kinds[kind][1]()
            if fault is None:  # nothing to do it to now
                if first_round:
                    self._retry_later(kind)
                continue
            self._settle(fault)
            self.faults.append(fault)
            on_fault(fault)

    def _retry_later(self, kind: str) -> None:
        """Put a first-round kind that found nothing to do it to back at the round's end,
        a few times at most: one that can never run here (the intruder without a second
        user) must not keep the round from ending."""
        self._misses[kind] = self._misses.get(kind, 0) + 1
        if self._misses[kind] <= FIRST_ROUND_RETRIES:
            self._first_round.insert(0, kind)

    def _next_kind(self) -> str:
        if self._first_round:
            return self._first_round.pop()
        kinds = [k for k in self._kinds if not (self.second_phase and k in ("broker_kill",
                                                                              "relay_kill"))]
        return self.rng.choices(kinds, weights=[self._kinds[k][0] for k in kinds])[0]

    # -- waiting for the site to heal --

    def _settle(self, fault: Fault) -> None:
        """Wait until every reader has frames again after the fault, or its limit has passed."""
        patience = fault.end + fault.limit + 3.0
        while True:
            self.site.revive_crashed()
            fault.recovery = {name: c.recovered_after(fault.end)
                              for name, c in self.site.consumers.items()}
            if all(s is not None for s in fault.recovery.values()):
                break
            if time.monotonic() > patience:
                break
            time.sleep(0.1)
        who, seconds = fault.worst
        if seconds is None or seconds > fault.limit:
            fault.broken.append(f"{who} had no frames {fault.limit:.1f} s after the fault ended"
                                if seconds is None else
                                f"{who} had frames again after {seconds:.2f} s "
                                f"(limit {fault.limit:.1f} s)")

    def _await_back(self, fault: Fault, back: Callable[[], float | None],
                    within: float = BACK_WITHIN) -> None:
        """Wait for a killed service to be back (*back*: seconds from the fault's end, or
        None while it is not); its readers then get RESUME_WITHIN more."""
        fault.back = _wait_for(back, fault.end + within + 5.0)
        if fault.back is None or fault.back > within:
            fault.broken.append(f"{fault.target} was not back within {within:.0f} s" +
                                ("" if fault.back is None else f" ({fault.back:.2f} s)"))
        fault.limit = (fault.back if fault.back is not None else within) + RESUME_WITHIN

    # -- the faults --

    def _killable_streams(self) -> list[str]:
        return [s for s in STREAMS if not (self.second_phase and s == WITNESS_STREAM)]

    def decoder_kill(self, stream: str | None = None) -> Fault | None:
        stream = stream or self.rng.choice(self._killable_streams())
        token = self.site.observer.token(stream)
        fault = self._kill(f"decoder:{stream}", "decoder_kill", stream)
        if fault is not None:
            self._await_back(fault, lambda: self.site.observer.back_after(stream, fault.end,
                                                                          token))
        return fault

    def decoder_stop(self) -> Fault | None:
        stream = self.rng.choice(STREAMS)
        return self._stop(f"decoder:{stream}", "decoder_stop", stream)

    def _kill(self, role: str, kind: str, target: str) -> Fault | None:
        """SIGKILL the process of *role*; the fault ends at once (its pid in the detail)."""
        pid = self.site.pid(role)
        if pid is None:
            return None
        fault = Fault(kind, target, time.monotonic(), detail={"pid": pid})
        _signal(pid, signal.SIGKILL)
        fault.end = fault.start
        return fault

    def broker_kill(self) -> Fault | None:
        fault = self._kill("broker", "broker_kill", "broker")
        if fault is None:
            return None
        # Frames never pass through the broker: readers must not even notice.
        fault.limit = RESUME_WITHIN
        fault.back = _wait_for(lambda: self.site.observer.broker_back_after(
            fault.end, everyone=True), fault.end + BACK_WITHIN + 5.0)
        if fault.back is None or fault.back > BACK_WITHIN:
            fault.broken.append("the broker and its streams were not back within "
                                f"{BACK_WITHIN:.0f} s")
        return fault

    def broker_stop(self) -> Fault | None:
        return self._stop("broker", "broker_stop", "broker")

    def relay_kill(self) -> Fault | None:
        fault = self._kill("relay", "relay_kill", "relay")
        if fault is not None:
            self._await_back(fault, lambda: self.site.observer.relay_back_after(
                fault.end, fault.detail["pid"]))
        return fault

    def relay_stop(self) -> Fault | None:
        return self._stop("relay", "relay_stop", "relay")

    def _stop(self, role: str, kind: str, target: str) -> Fault | None:
        pid = self.site.pid(role)
        if pid is None:
            return None
        fault = Fault(kind, target, time.monotonic())
        _signal(pid, signal.SIGSTOP)
        time.sleep(self.rng.uniform(0.3, MAX_STOP))
        _signal(pid, signal.SIGCONT)
        fault.end = time.monotonic()
        fault.detail["stopped"] = round(fault.end - fault.start, 2)
        return fault

    def consumer_kill(self) -> Fault | None:
        names = [n for n, c in self.site.consumers.items()
                 if not (self.second_phase and c.plan.witness)]
        consumer = self.site.consumers[self.rng.choice(names)]
        if consumer.pid is None:
            return None
        fault = Fault("consumer_kill", consumer.name, time.monotonic())
        _signal(consumer.pid, signal.SIGKILL)
        consumer.proc.wait()
        time.sleep(self.rng.uniform(0.0, 1.0))
        consumer.restart()
        fault.end = time.monotonic()
        fault.limit = NEW_READER_WITHIN
        return fault

    def consumer_stop(self) -> Fault | None:
        consumer = self.site.consumers[self.rng.choice(sorted(self.site.consumers))]
        if consumer.pid is None:
            return None
        fault = Fault("consumer_stop", consumer.name, time.monotonic())
        _signal(consumer.pid, signal.SIGSTOP)
        time.sleep(self.rng.uniform(0.3, MAX_STOP))
        _signal(consumer.pid, signal.SIGCONT)
        fault.end = time.monotonic()
        return fault

    def camera_restart(self) -> Fault:
        fault = Fault("camera_restart", "camera", time.monotonic())
        self.site.camera.kill()
        time.sleep(self.rng.uniform(0.5, 4.0))
        self.site.camera.start()
        fault.end = time.monotonic()
        fault.detail["down"] = round(fault.end - fault.start, 2)
        fault.limit = CAMERA_WITHIN
        return fault

    def link_cut(self) -> Fault:
        fault = Fault("link_cut", "a<->b", time.monotonic())
        self.site.a.link_down()
        time.sleep(self.rng.uniform(0.3, MAX_STOP))
        self.site.a.link_up()
        fault.end = time.monotonic()
        return fault

    def shm_full(self) -> Fault | None:
        stream = self.rng.choice(FILE_STREAMS)  # they start within a second, the camera not
        pid = self.site.pid(f"decoder:{stream}")
        if pid is None:
            return None
        token = self.site.observer.token(stream)
        fault = Fault("shm_full", stream, time.monotonic())
        log_start = self.site.up_log.stat().st_size
        filler = self.site.a.shm / "soak-filler"
        ring = self.site.a.shm / f"framebus.{stream}"
        _signal(pid, signal.SIGKILL)
        # Its own ring is freed when `up` reclaims it; then take all the room there is, but
        # for 64 KiB, before the restarted decoder (a second away) makes its new one.
        _wait_for(lambda: None if ring.exists() else 0.0, time.monotonic() + 2.0)
        stat = os.statvfs(self.site.a.shm)
        room = stat.f_bavail * stat.f_frsize
        def refused() -> list[str]:
            return _lines_since(self.site.up_log, log_start, f"[{stream}]", "no room in /dev/shm")

        try:
            with open(filler, "wb") as f:
                os.posix_fallocate(f.fileno(), 0, max(1, room - 64 * 1024))
            # Until the restarted decoder has failed to make its ring and said why, and then
            # a while longer, as `up` keeps trying.
            _wait_for(lambda: 0.0 if refused() else None, time.monotonic() + 10.0)
            time.sleep(self.rng.uniform(0.5, 2.0))
        finally:
            filler.unlink(missing_ok=True)
        fault.end = time.monotonic()
        said = refused()
        fault.detail["error"] = said[0].split("] ", 1)[-1] if said else None
        if not said or "needs" not in said[0]:
            fault.broken.append(f"{stream}: no error naming the room it needs was logged")
        # Counted from the release: until then, no ring can be made.
        self._await_back(fault, lambda: self.site.observer.back_after(stream, fault.end, token))
        return fault

    def fuzz_service(self, service: str) -> Fault:
        port = BROKER_PORT if service == "broker" else RELAY_PORT
        fault = Fault(f"fuzz_{service}", service, time.monotonic())
        run = self.site.a.run([PYTHON, *module("fuzz"), service,
                               f"tcp://127.0.0.1:{port}", "--count", str(FUZZ_COUNT),
                               "--seed", str(self.rng.randrange(2**32))], timeout=120, cwd=ROOT)
        fault.end = time.monotonic()
        try:
            outcome = json.loads(run.stdout.strip().splitlines()[-1])
        except (ValueError, IndexError):
            fault.broken.append(f"the {service} fuzzer failed: {run.stderr.strip()[-300:]}")
            return fault
        fault.detail = outcome
        totals = self.fuzz.setdefault(service, {})
        for key, value in outcome.items():
            if isinstance(value, int) and not isinstance(value, bool):
                totals[key] = totals.get(key, 0) + value
        unanswered = outcome.get("silent", 0) + outcome.get("garbled", 0)
        if unanswered or not outcome.get("alive_after"):
            fault.broken.append(f"the {service} left {unanswered} messages unanswered or "
                                "answered garbage, or stopped answering")
        return fault

    def intruder(self) -> Fault | None:
        if self.other_user is None:
            return None
        fault = Fault("intruder", WITNESS_STREAM, time.monotonic())
        uid, gid = self.other_user
        run = self.site.a.run([PYTHON, ROOT / "tests" / "intruder.py", str(uid), str(gid),
                               WITNESS_STREAM, str(intruder.ROUNDS)], timeout=120, cwd=ROOT)
        fault.end = time.monotonic()
        try:
            totals, accepted = intruder.judge(run.stdout)
        except (ValueError, IndexError, KeyError):
            fault.broken.append(f"the intruder failed: {run.stderr.strip()[-300:]}")
            return fault
        fault.detail = totals
        for key, value in totals.items():
            self.intrusions[key] += value
        if accepted:
            fault.broken.append("another user got away with: " + "; ".join(accepted))
        return fault


def _wait_for(value: Callable[[], float | None], deadline: float) -> float | None:
    """Poll *value* until it is not None or *deadline* (monotonic) has passed."""
    while (result := value()) is None and time.monotonic() < deadline:
        time.sleep(0.05)
    return result


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _lines_since(path, offset: int, *needles: str) -> list[str]:
    with open(path, errors="replace") as f:
        f.seek(offset)
        return [line.rstrip() for line in f if all(n in line for n in needles)]
