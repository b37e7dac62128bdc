"""Running one scale of the broker benchmark from the main process: the broker as a process of
its own, the load's children, the steady phase measured from /proc, and the death watch."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import msgspec
import zmq

from bench.broker.load import Control, Stream, child_entry, producer_process, subscriber_process
from bench.common import STOP_TIMEOUT, collect, cpu_seconds, free_port, start_process
from framebus import config
from framebus.discovery import BrokerClient
from framebus.errors import FramebusError
from framebus.protocol.broker import encode
from framebus.support.children import PARENT_ENV, framebus_command, spawn, stop, stop_all

STARTUP_TIMEOUT = 30.0
#: After the go, before the steady phase: every simulated producer has beaten once by then.
WARMUP = 1.5
#: The death watch polls `list` this often (or five times as long as the last list took),
#: and gives up this long after the stop.
POLL_EVERY = 0.05
WATCH_FOR = config.DEAD_AFTER + 8.0
#: Fake pids: on a host that is not the broker's, a pid is only a number.
FIRST_PID = 100_000


#: A scale's modes: the broker as it is; the streams it took beating as often as all the
#: streams asked would (RATE); the broker with its cap of streams raised to the scale, by
#: setting framebus.broker.MAX_STREAMS in its process before it starts (LIFTED).
AS_IS, RATE, LIFTED = "", "rate", "cap lifted"


@dataclass(frozen=True)
class Scale:
    """One column of the table: *streams* spread over *hosts*, beating every 0.5 s."""

    streams: int
    hosts: int
    mode: str = AS_IS

    def __str__(self) -> str:
        if self.mode == RATE:
            return f"{self.streams:,} streams' heartbeat rate on the streams registered"
        lifted = ", the broker's cap lifted" if self.mode == LIFTED else ""
        return f"{self.streams:,} streams on {self.hosts} hosts{lifted}"

    def plan(self) -> list[Stream]:
        """The simulated producers: host h gets streams h, h + hosts, ... (hosts differ by
        one stream at most), each with a host name of its own that is not this host's."""
        plan = []
        for i in range(self.streams):
            host, n = i % self.hosts, i // self.hosts
            plan.append(Stream(f"sim-h{host:03d}-s{n:03d}", f"framebus-bench-host-{host:03d}",
                               FIRST_PID + i))
        return plan


@dataclass
class Settings:
    seconds: float  # the steady phase
    subscribers: int  # lookup processes
    lookup_rate: float  # lookups a second, each
    producer_procs: int
    kill: int  # simulated producers stopped at once for the death watch
    max_streams_option: bool  # `framebus broker` has --max-streams


@dataclass
class Measured:
    """What one scale's run gave, raw; report.py turns it into figures."""

    scale: Scale
    interval: float = config.HEARTBEAT_INTERVAL
    accepted: int = 0
    refused: dict[str, int] = field(default_factory=dict)
    register_seconds: float = 0.0
    t0: float = 0.0
    t1: float = 0.0
    cpu: float | None = None  # the broker's CPU seconds over [t0, t1]
    load_cpu: dict[str, float] = field(default_factory=dict)  # the load's, by kind
    waited: float | None = None  # seconds the broker's threads waited for a CPU, [t0, t1]
    rss_mb: float | None = None
    peak_rss_mb: float | None = None
    producers: list[dict] = field(default_factory=list)
    subscribers: list[dict] = field(default_factory=list)
    watch: dict | None = None  # the death watch: see DeathWatch.run
    load: tuple[float, float] = (0.0, 0.0)  # 1-minute load average at the start, at the end
    log: dict[str, int] = field(default_factory=dict)
    broker_exit: int | None = None


def has_max_streams_option() -> bool:
    """Whether this framebus's broker takes --max-streams (the cap of issue 14)."""
    try:
        out = subprocess.run(framebus_command(["broker", "--help"]), capture_output=True,
                             text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return False
    return "--max-streams" in out


#: `framebus ARGS` with the broker's cap of streams set to argv[1] first.
LIFT = ("import sys\nimport framebus.broker\nframebus.broker.MAX_STREAMS = int(sys.argv[1])\n"
        "from framebus.cli import main\nmain(sys.argv[2:], prog_name='framebus')\n")


class BrokerProcess:
    """`framebus broker` on a private loopback port, its log in *directory*."""

    def __init__(self, directory: str, max_streams: int | None, lift: int | None) -> None:
        self.address = f"tcp://127.0.0.1:{free_port()}"
        # The simulated producers claim other hosts over loopback and have no rings: a
        # broker that checks them (framebus/trust.py) would refuse them all.
        args = ["broker", "--bind", self.address, "--trust-loopback"]
        if max_streams is not None:
            args += ["--max-streams", str(max_streams)]
        self.log_path = Path(directory, f"broker-{time.monotonic_ns()}.log")
        with open(self.log_path, "ab") as log_file:  # the child keeps its copy
            if lift is None:
                self.proc = spawn(args, stdin=subprocess.DEVNULL, stdout=log_file,
                                  stderr=log_file)
            else:  # as spawn() does it: a session of its own, told to die with us
                self.proc = subprocess.Popen(
                    [sys.executable, "-c", LIFT, str(lift), *args], start_new_session=True,
                    env={**os.environ, PARENT_ENV: str(os.getpid())}, stdin=subprocess.DEVNULL,
                    stdout=log_file, stderr=log_file)
        try:
            self._wait_ready()
        except BaseException:  # Ctrl-C too: never a broker left behind
            self.stop()
            raise

    def _wait_ready(self) -> None:
        end = time.monotonic() + STARTUP_TIMEOUT
        with BrokerClient(self.address, timeout=0.3) as client:
            while time.monotonic() < end:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"the broker exited with {self.proc.returncode}: "
                                       + self.log_path.read_text(errors="replace")[-500:])
                try:
                    client.request("ping")
                    return
                except FramebusError:
                    time.sleep(0.1)
        raise RuntimeError(f"the broker did not answer within {STARTUP_TIMEOUT:g} s")

    def cpu(self) -> float | None:
        return cpu_seconds(self.proc.pid)

    def run_queue_wait(self) -> float | None:
        """Seconds its threads have spent runnable but waiting for a CPU (schedstat)."""
        try:
            tasks = list(Path(f"/proc/{self.proc.pid}/task").iterdir())
            return sum(int((t / "schedstat").read_text().split()[1]) for t in tasks) / 1e9
        except (OSError, ValueError, IndexError):
            return None

    def memory(self) -> tuple[float | None, float | None]:
        """Resident and peak resident memory (MB)."""
        try:
            status = Path(f"/proc/{self.proc.pid}/status").read_text()
        except OSError:
            return None, None
        kb = {line.split(":")[0]: int(line.split()[1]) for line in status.splitlines()
              if line.startswith(("VmRSS:", "VmHWM:"))}
        return kb.get("VmRSS", 0) / 1024, kb.get("VmHWM", 0) / 1024

    def log_counts(self) -> dict[str, int]:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        lines = text.splitlines()
        return {"lines": len(lines), "dropped replies": sum("dropped a reply" in x for x in lines),
                "errors": sum(" ERROR " in x or "Traceback" in x for x in lines)}

    def stop(self) -> int | None:
        return stop(self.proc, STOP_TIMEOUT)


# -- one scale -------------------------------------------------------------------------------------


def run_scale(scale: Scale, settings: Settings, mp, directory: str) -> Measured:
    m = Measured(scale, load=(os.getloadavg()[0], 0.0))
    broker = BrokerProcess(directory, scale.streams if settings.max_streams_option else None,
                           scale.streams if scale.mode == LIFTED else None)
    queue, control = mp.Queue(), Control(mp, settings.producer_procs)
    deadline = time.time() + 3 * STARTUP_TIMEOUT + settings.seconds + WATCH_FOR + 60
    procs: list = []
    try:
        plan = scale.plan()
        shares = [plan[k::settings.producer_procs] for k in range(settings.producer_procs)]
        for k, share in enumerate(shares):
            procs.append(start_process(mp, child_entry, producer_process, queue, k,
                                       broker.address, share, control, deadline))
        registered = collect(queue, "registered", len(shares), procs, STARTUP_TIMEOUT)
        accepted = [registered[k]["accepted"] for k in range(len(shares))]
        names = [name for share in accepted for name in share]
        m.accepted = len(names)
        for report in registered.values():
            for code, n in report["refused"].items():
                m.refused[code] = m.refused.get(code, 0) + n
        m.register_seconds = max(r["seconds"] for r in registered.values())
        if not names:
            raise RuntimeError(f"the broker took none of the {scale.streams} registrations: "
                               f"{m.refused}")
        subs = [f"sub{j}" for j in range(settings.subscribers)]
        for role in subs:
            procs.append(start_process(mp, child_entry, subscriber_process, queue, role,
                                       broker.address, names, settings.lookup_rate, control,
                                       deadline))
        collect(queue, "ready", len(subs), procs, STARTUP_TIMEOUT)
        m.interval = config.HEARTBEAT_INTERVAL * (m.accepted / scale.streams
                                                  if scale.mode == RATE else 1.0)
        control.interval.value = m.interval
        time.sleep(WARMUP)
        m.t0, cpu0, load0, wait0 = time.monotonic(), broker.cpu(), _cpu(procs), \
            broker.run_queue_wait()
        time.sleep(settings.seconds)
        m.t1, cpu1, load1, wait1 = time.monotonic(), broker.cpu(), _cpu(procs), \
            broker.run_queue_wait()
        m.waited = None if wait0 is None or wait1 is None else wait1 - wait0
        m.rss_mb, m.peak_rss_mb = broker.memory()
        m.cpu = None if cpu0 is None or cpu1 is None else cpu1 - cpu0
        m.load_cpu = {kind: load1[kind] - load0[kind] for kind in load0}
        if settings.kill and scale.mode != RATE:
            killed = _choose(accepted, settings.kill, control)
            m.watch = DeathWatch(broker.address).run(killed, set(names) - set(killed), control)
        control.finish.value = 1.0
        results = collect(queue, "result", len(shares) + len(subs), procs, STARTUP_TIMEOUT)
        m.producers = [results[k] for k in range(len(shares))]
        m.subscribers = [results[role] for role in subs]
        return m
    finally:
        control.finish.value = 1.0
        stop_all(procs, STOP_TIMEOUT, patience=5.0)
        queue.close()
        m.broker_exit = broker.stop()
        m.log = broker.log_counts()
        m.load = (m.load[0], os.getloadavg()[0])


def _cpu(procs: list) -> dict[str, float]:
    """CPU seconds of the load's children so far: the producers', the subscribers'."""
    seconds = {"producers": 0.0, "subscribers": 0.0}
    for p in procs:
        kind = "subscribers" if "sub" in p.name else "producers"
        seconds[kind] += cpu_seconds(p.pid) or 0.0
    return seconds


def _choose(accepted: list[list[str]], kill: int, control: Control) -> list[str]:
    """Split *kill* stops over the producer processes as they registered streams; each stops
    the first of its own. Returns the names stopped."""
    total = sum(len(a) for a in accepted)
    kill = min(kill, total)
    counts = [len(a) * kill // total for a in accepted]
    for k in sorted(range(len(accepted)), key=lambda k: -len(accepted[k])):
        if sum(counts) < kill and counts[k] < len(accepted[k]):
            counts[k] += 1
    for k, n in enumerate(counts):
        control.kills[k] = n
    return [name for a, n in zip(accepted, counts) for name in a[:n]]


# -- the death watch ---------------------------------------------------------------------------


class _Listed(msgspec.Struct):
    name: str
    alive: bool = True  # a broker's reply leaves a field out at its default


class _Listing(msgspec.Struct):
    """A list reply as far as the watch needs it, however many streams it has."""

    ok: bool
    id: int | None = None
    streams: list[_Listed] = []
    stream: _Listed | None = None  # a lookup's


_LISTING = msgspec.msgpack.Decoder(_Listing)


class DeathWatch:
    """Stops heartbeats at once and polls the broker until it shows every one of them dead."""

    def __init__(self, address: str) -> None:
        self.context = zmq.Context()
        self.socket = self.context.socket(zmq.DEALER)
        self.socket.linger = 0
        self.socket.connect(address)
        self.ids = 0

    def run(self, killed: list[str], live: set[str], control: Control) -> dict:
        """Returns when each stopped stream was first seen dead (monotonic), the live streams
        seen dead meanwhile, and the polls' round trips (s)."""
        try:
            self._ask({"op": "ping"}, 2.0)  # connected before the stop
            pending, seen, false_dead = set(killed), {}, set()
            rtts: list[float] = []
            periods: list[float] = []
            stop_at = time.monotonic() + 0.2  # every producer process is told in time
            control.kill_at.value = stop_at
            while pending and time.monotonic() < stop_at + WATCH_FOR:
                t = time.monotonic()
                states = self._states(pending)
                now = time.monotonic()
                rtts.append(now - t)
                for name, alive in states.items():
                    if name in pending and not alive:
                        pending.discard(name)
                        seen[name] = now
                    elif name in live and not alive:
                        false_dead.add(name)
                # A long list takes the broker's time from the heartbeats: at most a fifth.
                period = max(POLL_EVERY, 5 * (now - t))
                periods.append(period)
                time.sleep(max(0.0, t + period - time.monotonic()))
            return {"stop_at": stop_at, "seen": seen, "missing": sorted(pending),
                    "false_dead": len(false_dead), "rtts": rtts, "stopped": len(killed),
                    "period": max(periods, default=POLL_EVERY)}
        finally:
            self.context.destroy(linger=0)

    def _states(self, pending: set[str]) -> dict[str, bool]:
        """Every stream's alive flag from `list`; the stopped ones it leaves out, looked up."""
        reply = self._ask({"op": "list"}, 2.0)
        states = {s.name: s.alive for s in reply.streams} if reply and reply.ok else {}
        for name in [n for n in pending if n not in states]:
            one = self._ask({"op": "lookup", "name": name}, 1.0)
            if one is not None and one.ok and one.stream is not None:
                states[name] = one.stream.alive
        return states

    def _ask(self, request: dict, timeout: float) -> _Listing | None:
        self.ids += 1
        self.socket.send_multipart([b"", encode({**request, "id": self.ids})])
        end = time.monotonic() + timeout
        while self.socket.poll(max(0, int((end - time.monotonic()) * 1000))):
            reply = _LISTING.decode(self.socket.recv_multipart()[-1])
            if reply.id == self.ids:
                return reply
        return None
