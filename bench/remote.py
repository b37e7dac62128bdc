#!/usr/bin/env python
"""Benchmark: frames to consumers in other processes over loopback TCP, side by side.

Systems, each a producer process and consumer processes on one host, talking over TCP:

  framebus-raw   producer -> ring in /dev/shm -> `framebus relay` -> Subscriber(transport="tcp")
  framebus-jpeg  the same, Subscriber(codec="jpeg", quality=90): the relay encodes, once a frame
  imagezmq       ImageSender / ImageHub in PUB/SUB mode (the sender binds)
  netgear        vidgear NetGear, pattern=2 (PUB/SUB) in multi-client mode, as installed (raw
                 frames: its JPEG compression is on only when simplejpeg is installed). Its
                 default, pattern=0 (PAIR), serves one client; multi-client mode needs 1 or 2,
                 and with 1 (REQ/REP) each send() waits for a client's reply.
  local          framebus's local path: a shared-memory subscriber (transport="shm") alone,
                 then while 4 remote framebus-raw consumers read the same stream

Every cell (size, system, consumers) starts the producer and its consumers, publishes at 30 fps
until each consumer has a frame, then runs two phases, one after the other:

  paced     100 fps up to 1280x720, 60 fps above: a fast camera. Latency, the slow consumer, and
            the local subscriber's rate are judged here: flat out, on two cores, every extra
            process takes CPU from every other, and a ratio would measure that, not the bus.
  flat out  as fast as the producer can: the most each path delivers (its capacity), and the
            producer's own rate with and without remote readers.

Consumers are "1" (one fast consumer) or "4" (three fast ones and one slow one that sleeps
0.5 s after each frame, so it reads at 2 fps). Latency runs from the producer's clock
(framebus: frame.timestamp_ns, taken at commit; imagezmq: time.time_ns() in the message text;
NetGear: time.time_ns() written into the frame's first pixels, as its PUB/SUB mode drops the
message) to the consumer holding the array (decoded, for JPEG). One host, so one clock.

From the repository root:

    .venv/bin/python bench/remote.py [--seconds 4] [--sizes 640x480,1920x1080]
        [--systems framebus-raw,framebus-jpeg,imagezmq,netgear,local] [--markdown]
"""

from __future__ import annotations

import logging
import os
import queue as queue_module
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Protocol

import click
import common
import cv2
import numpy as np
import zmq
from common import (
    Aborted,
    FramebusSender,
    ImagezmqReceiver,
    ImagezmqSender,
    Sender,
    cpu_seconds,
    format_pair,
    free_port,
    loop_rate,
    parse_sizes,
    parse_systems,
    percentiles,
    print_section,
    publish_for,
    shutdown,
    start_process,
    sweep_rings,
    verdict,
    warm_up,
)
from rich.console import Console
from rich.table import Table

import framebus
from framebus.discovery import BrokerClient
from framebus.errors import FramebusError
from framebus.supervisor import PARENT_ENV, die_with_supervisor
from framebus.testsrc import TestPattern

SYSTEMS = ("framebus-raw", "framebus-jpeg", "imagezmq", "netgear", "local")
DEFAULT_SIZES = "640x480,1920x1080"
JPEG_QUALITY = 90
SLOW_PERIOD = 0.5  # the slow consumer sleeps this long after each frame: 2 fps
WARMUP_FPS = 30.0
#: After the phases the producer goes on at this rate until the consumers have stopped, so
#: no consumer waits for a frame that never comes (NetGear's recv() has no timeout).
TAIL_FPS = 10.0
#: Between the phases, so the last paced frame is not replaced at once by a flat-out one.
PHASE_GAP = 0.3
#: After the flat-out phase, consumers get this long to take frames still in flight.
GRACE = 0.5
STARTUP_TIMEOUT = 30.0
#: Long enough that a framebus remote subscriber never gives up a credit mid-frame: a recv()
#: that times out abandons its outstanding request (RemotePath.abandon) and asks again.
RECV_TIMEOUT = 1.0
#: imagezmq's SUB queue is 1000 frames as shipped: four consumers falling behind at 1080p
#: would hold 25 GB. It is lowered to this (bench/bus.py's raw zmq figure) by reconnecting.
IMAGEZMQ_RCVHWM = 8
NETGEAR_TIMEOUT = 5  # seconds without a message before a NetGear receiver gives up
STAMP = struct.Struct("<qq")  # seq, producer clock (ns): NetGear's first 16 bytes of pixels

err = Console(stderr=True)


def paced_rate(width: int, height: int) -> float:
    """The fixed rate of the paced phase: a fast camera of that size."""
    return 100.0 if width * height <= 1280 * 720 else 60.0


# -- what one cell runs ---------------------------------------------------------------------


@dataclass(frozen=True)
class Consumer:
    transport: str = "tcp"  # "tcp": over the network path; "shm": framebus's local path
    slow: bool = False


SOLO = (Consumer(),)
FOUR = (Consumer(), Consumer(), Consumer(), Consumer(slow=True))
SHM_ALONE = (Consumer("shm"),)
SHM_LOADED = (Consumer("shm"), Consumer(), Consumer(), Consumer(), Consumer())
SCENARIO_NAMES = {SOLO: "1", FOUR: "4 (1 slow)", SHM_ALONE: "1 shm",
                  SHM_LOADED: "1 shm + 4 tcp"}


@dataclass(frozen=True)
class Cell:
    system: str  # one of SYSTEMS but "local": those cells are framebus-raw with an shm consumer
    width: int
    height: int
    consumers: tuple[Consumer, ...]
    seconds: float
    stream: str  # framebus stream name, unique to the run and cell
    broker: str
    ports: tuple[int, ...] = ()  # netgear: the port each consumer binds

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.height, self.width, 3)

    @property
    def size(self) -> str:
        return f"{self.width}x{self.height}"

    @property
    def paced_fps(self) -> float:
        return paced_rate(self.width, self.height)

    @property
    def scenario(self) -> str:
        return SCENARIO_NAMES.get(self.consumers, f"{len(self.consumers)}")

    @property
    def local(self) -> bool:
        return any(c.transport == "shm" for c in self.consumers)

    @property
    def framebus(self) -> bool:
        return self.system.startswith("framebus")

    def __str__(self) -> str:
        return f"{self.size} {self.system}, {self.scenario}"


# -- the systems: a Sender in the producer, a Receiver in each consumer -----------------------
#
# Sender.send(image, seq, t_start) gets the producer's clock taken just before the call.
# Receiver.recv(timeout) returns (seq, t_write, t_recv): t_write is the producer's clock as the
# system carries it, t_recv the consumer's once it holds the array; None on timeout.


class Receiver(Protocol):
    def recv(self, timeout: float) -> tuple[int, int, int] | None: ...

    def stats(self) -> dict: ...

    def close(self) -> None: ...


class FramebusReceiver:
    """framebus.Subscriber over the relay (transport="tcp") or from the ring (transport="shm")."""

    def __init__(self, cell: Cell, consumer: Consumer) -> None:
        codec = "jpeg" if cell.system == "framebus-jpeg" else "raw"
        self.sub = framebus.Subscriber(cell.stream, broker=cell.broker,
                                       transport=consumer.transport, codec=codec,
                                       quality=JPEG_QUALITY)
        self.held: np.ndarray | None = None

    def recv(self, timeout: float) -> tuple[int, int, int] | None:
        try:
            frame = self.sub.recv(timeout=timeout)
        except framebus.Timeout:
            return None
        self.held = frame.array  # remote: the frame's own pixels, decoded if JPEG
        return frame.seq, frame.timestamp_ns, time.time_ns()

    def stats(self) -> dict:
        return {"dropped": self.sub.dropped, "received": self.sub.received,
                "rejected": self.sub.rejected, "path": self.sub.path}

    def close(self) -> None:
        self.held = None
        self.sub.close()


def _quiet_vidgear() -> None:
    # NetGear logs at DEBUG whatever `logging=False` says, and an ERROR with a traceback
    # when simplejpeg is missing (it then sends raw frames, which is what we measure).
    for name in ("NetGear", "Helper"):
        logging.getLogger(name).setLevel(logging.CRITICAL + 1)


class NetgearSender:
    """vidgear NetGear server, pattern=2 (PUB/SUB), multi-client: it connects to each consumer.

    NetGear sends zero-copy, so each frame gets a buffer of its own (a copy of the image, as
    framebus's publish makes one) with seq and clock written into its first 16 bytes.
    """

    def __init__(self, cell: Cell) -> None:
        from vidgear.gears import NetGear

        _quiet_vidgear()
        self.gear = NetGear(address="127.0.0.1", port=[str(p) for p in cell.ports],
                            protocol="tcp", pattern=2, logging=False, multiclient_mode=True)
        self.address = ",".join(map(str, cell.ports))

    def send(self, image: np.ndarray, seq: int, t_start: int) -> None:
        frame = image.copy()
        frame.reshape(-1)[:STAMP.size] = np.frombuffer(STAMP.pack(seq, t_start), np.uint8)
        self.gear.send(frame)

    def close(self) -> None:
        self.gear.close()


class NetgearReceiver:
    """vidgear NetGear client, pattern=2, multi-client: binds its own port, receives in a thread."""

    def __init__(self, cell: Cell, port: str) -> None:
        from vidgear.gears import NetGear

        _quiet_vidgear()
        self.gear = NetGear(address="127.0.0.1", port=port, protocol="tcp", pattern=2,
                            receive_mode=True, logging=False, multiclient_mode=True,
                            subscriber_timeout=NETGEAR_TIMEOUT)
        self.held: np.ndarray | None = None

    def recv(self, timeout: float) -> tuple[int, int, int] | None:
        # No timeout here: recv() spins until a frame comes (the producer's tail keeps them
        # coming) or the receive thread gives up after NETGEAR_TIMEOUT s of silence.
        frame = self.gear.recv()
        if frame is None:
            return None
        self.held = frame
        t_recv = time.time_ns()
        seq, t_start = STAMP.unpack(frame.reshape(-1)[:STAMP.size].tobytes())
        return seq, t_start, t_recv

    def stats(self) -> dict:
        return {}

    def close(self) -> None:
        # NetGear.close() closes the socket while its receive thread may be inside recv on
        # it, which aborts the process in libzmq (signaler.cpp assertion). Let the thread see
        # its stop flag after its next message first (name-mangled private attributes).
        gear = self.gear
        gear._NetGear__terminate = True
        thread = gear._NetGear__thread
        if thread is not None:
            thread.join(NETGEAR_TIMEOUT + 1)
        if thread is None or not thread.is_alive():
            gear.close()


def make_sender(cell: Cell) -> Sender:
    if cell.framebus:
        return FramebusSender(cell)
    return {"imagezmq": ImagezmqSender, "netgear": NetgearSender}[cell.system](cell)


def make_receiver(cell: Cell, consumer: Consumer, address: str) -> Receiver:
    if cell.framebus:
        return FramebusReceiver(cell, consumer)
    if cell.system == "imagezmq":
        return ImagezmqReceiver(address, rcvhwm=IMAGEZMQ_RCVHWM)
    return NetgearReceiver(cell, address)


# -- the child processes ----------------------------------------------------------------------
#
# They talk to the main process through one queue of (kind, role, payload) messages with plain
# payloads (classes of this script pickle badly between __main__ and __mp_main__).


def exit_on_sigterm(code: int) -> None:
    """SIGTERM unwinds like Ctrl-C, so `finally` blocks run; only the first one does: a
    second SIGTERM (a child can get two when the main process dies) must not cut them short."""

    def handler(*_) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        sys.exit(code)

    signal.signal(signal.SIGTERM, handler)


def _child(target: Callable, queue, role, *args) -> None:
    """Entry point of every child: SIGTERM unwinds like Ctrl-C; dies with the main process."""
    exit_on_sigterm(0)
    die_with_supervisor()  # PR_SET_PDEATHSIG: even a SIGKILLed main leaves no child behind
    try:
        target(queue, *args)
    except (KeyboardInterrupt, SystemExit, Aborted):
        pass
    except Exception:
        queue.put(("error", role, traceback.format_exc()))


def producer_process(queue, cell: Cell, go, finish, deadline: float) -> None:
    image = TestPattern(cell.shape).frame(0)
    sender = make_sender(cell)
    try:
        queue.put(("up", "producer", sender.address))
        seq = warm_up(sender, image, go, finish, deadline, WARMUP_FPS)
        queue.put(("phase", "producer", ("paced", time.time_ns())))
        paced = publish_for(sender, image, seq, cell.seconds, cell.paced_fps)
        time.sleep(PHASE_GAP)
        queue.put(("phase", "producer", ("flat out", time.time_ns())))
        flat = publish_for(sender, image, paced["end"], cell.seconds, 0.0)
        queue.put(("done", "producer", {"paced": paced, "flat": flat}))
        _tail(sender, image, flat["end"], finish, deadline)
    finally:
        sender.close()


def _tail(sender: Sender, image: np.ndarray, seq: int, finish, deadline: float) -> None:
    """Slow frames until the consumers have reported, so none blocks waiting for one."""
    while not finish.wait(1.0 / TAIL_FPS) and time.time() < deadline:
        sender.send(image, seq, time.time_ns())
        seq += 1


def consumer_process(queue, cell: Cell, index: int, address: str, stop,
                     deadline: float) -> None:
    consumer = cell.consumers[index]
    receiver = make_receiver(cell, consumer, address)
    try:
        samples: list[tuple[int, int, int]] = []
        next_check = next_tick = 0.0
        while True:
            now = time.monotonic()
            if now >= next_check:  # an Event takes locks: look 50 times a second, not per frame
                if stop.is_set() or time.time() > deadline:
                    break
                next_check = now + 0.02
            if now >= next_tick:  # live figures for the main process
                queue.put(("tick", index, (time.time_ns(), len(samples))))
                next_tick = now + 0.5
            sample = receiver.recv(RECV_TIMEOUT)
            if sample is None:
                continue
            if not samples:
                queue.put(("ready", index, None))
            samples.append(sample)
            if consumer.slow:
                stop.wait(SLOW_PERIOD)
        log = np.array(samples, np.int64).reshape(-1, 3)
        queue.put(("result", index, {"samples": log, **receiver.stats()}))
    finally:
        receiver.close()


# -- CPU of every process of a cell, from /proc ------------------------------------------------

class CpuSampler(threading.Thread):
    """Samples the CPU time of named processes every 0.2 s, to tell each phase's CPU %."""

    def __init__(self, pids: dict[str, int]) -> None:
        super().__init__(name="bench-cpu", daemon=True)
        self.pids = dict(pids)
        self.samples: list[tuple[int, dict[str, float | None]]] = []
        self._halt = threading.Event()

    def run(self) -> None:
        while True:
            self.samples.append((time.time_ns(), {r: cpu_seconds(p) for r, p in self.pids.items()}))
            if self._halt.wait(0.2):
                return

    def stop(self) -> None:
        self._halt.set()
        self.join(1.0)

    def percent(self, role: str, t0: int, t1: int) -> float | None:
        """CPU % of one core used by *role* between the samples inside [t0, t1]."""
        inside = [(t, s[role]) for t, s in self.samples
                  if t0 <= t <= t1 and s.get(role) is not None]
        if len(inside) < 2 or inside[-1][0] == inside[0][0]:
            return None
        (ta, ca), (tb, cb) = inside[0], inside[-1]
        return 100.0 * (cb - ca) / ((tb - ta) / 1e9)


# -- what the main process owns: broker, relay, namespace, cleanup -----------------------------


class Environment:
    """A private broker, relay, shared-memory prefix and socket directory; all removed at close."""

    def __init__(self) -> None:
        self.runtime_dir = tempfile.mkdtemp(prefix="fbremote-")
        self.prefix = f"fbremote{os.getpid()}"
        self.address = f"tcp://127.0.0.1:{free_port()}"
        # Children inherit all four; PARENT_ENV makes every `framebus` child and every
        # benchmark child die with this process, however it dies.
        os.environ.update({"FRAMEBUS_SHM_PREFIX": self.prefix,
                           "FRAMEBUS_RUNTIME_DIR": self.runtime_dir,
                           "FRAMEBUS_BROKER": self.address, PARENT_ENV: str(os.getpid())})
        self.relay_endpoint: str | None = None
        self.broker: subprocess.Popen | None = None
        self.relay: subprocess.Popen | None = None
        self.relay_restarts = 0
        self.leftovers: list[str] = []
        self._streams = 0

    def _service(self, *args: str, log_name: str) -> subprocess.Popen:
        """A `framebus` command in the background, its log in the runtime directory."""
        with open(Path(self.runtime_dir, log_name), "ab") as log_file:  # the child keeps a copy
            return subprocess.Popen([sys.executable, "-m", "framebus", *args],
                                    stdin=subprocess.DEVNULL, stdout=log_file, stderr=log_file)

    def start_broker(self) -> None:
        self.broker = self._service("broker", "--bind", self.address, log_name="broker.log")
        self._wait_for(lambda client: client.request("ping", 0.3), "the broker", self.broker)

    def ensure_relay(self) -> None:
        """Start the relay (a host runs one for all its streams), or restart it if it died."""
        if self.relay is not None and self.relay.poll() is None:
            return
        if self.relay is not None:
            self.relay_restarts += 1
            err.print(f"[red]relay exited with {self.relay.returncode}; restarting[/]")
        self.relay_endpoint = f"tcp://127.0.0.1:{free_port()}"
        self.relay = self._service("relay", "--bind", self.relay_endpoint, log_name="relay.log")

        def registered(client: BrokerClient) -> bool:
            return any(r.get("endpoint") == self.relay_endpoint and r.get("alive", True)
                       for r in client.relays(0.3))

        self._wait_for(registered, "the relay", self.relay)

    def _wait_for(self, ready: Callable[[BrokerClient], object], what: str,
                  proc: subprocess.Popen) -> None:
        end = time.monotonic() + STARTUP_TIMEOUT
        with BrokerClient(self.address, timeout=0.3) as client:
            while time.monotonic() < end:
                if proc.poll() is not None:
                    raise RuntimeError(f"{what} exited with {proc.returncode}: {self.log_tail()}")
                try:
                    if ready(client):
                        return
                except FramebusError:
                    pass
                time.sleep(0.1)
        raise RuntimeError(f"{what} not ready within {STARTUP_TIMEOUT:g} s")

    def log_tail(self, lines: int = 5) -> str:
        tails = []
        for name in ("broker.log", "relay.log"):
            path = Path(self.runtime_dir, name)
            if path.exists():
                tails += path.read_text(errors="replace").splitlines()[-lines:]
        return "\n".join(tails)

    def stream_name(self, cell_kind: str) -> str:
        self._streams += 1
        return f"remote{os.getpid()}-{self._streams}-{cell_kind}"

    def sweep(self) -> None:
        """Remove every ring of this run still in /dev/shm: a producer's cleanup failed."""
        self.leftovers += sweep_rings(self.prefix)

    def close(self) -> None:
        for proc in (self.relay, self.broker):  # relay first: it reads rings and asks the broker
            _stop_process(proc)
        self.sweep()
        shutil.rmtree(self.runtime_dir, ignore_errors=True)


def _stop_process(proc: subprocess.Popen | None, patience: float = 5.0) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()  # SIGTERM: framebus unwinds and closes its sockets
    try:
        proc.wait(patience)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


# -- running a cell from the main process -----------------------------------------------------


class LiveFigures:
    """Consumers' rates as they run: a status line on a terminal, a line per phase anyway."""

    def __init__(self, cell: Cell, status) -> None:
        self.cell, self.status = cell, status
        self.phase = "warm-up"
        self.ticks: dict[int, list[tuple[int, int]]] = {}

    def tick(self, index: int, payload: tuple[int, int]) -> None:
        self.ticks.setdefault(index, []).append(payload)
        if self.status is not None:
            self.status.update(f"{self.cell}: {self.phase}: {self._rates(last=2)}")

    def new_phase(self, name: str, t_start: int) -> None:
        if self.phase != "warm-up":
            err.print(f"    {self.phase}: {self._rates()}", highlight=False)
        self.phase = name
        for index in self.ticks:  # rates of the new phase count from its start
            self.ticks[index] = [t for t in self.ticks[index] if t[0] >= t_start][-1:]

    def finish(self) -> None:
        self.new_phase("", 0)

    def _rates(self, last: int = 0) -> str:
        parts = []
        for index in sorted(self.ticks):
            ticks = self.ticks[index][-last:] if last else self.ticks[index]
            if len(ticks) < 2 or ticks[-1][0] == ticks[0][0]:
                continue
            rate = (ticks[-1][1] - ticks[0][1]) / ((ticks[-1][0] - ticks[0][0]) / 1e9)
            c = self.cell.consumers[index]
            label = "slow " if c.slow else ("shm " if c.transport == "shm" else "")
            parts.append(f"{label}{rate:,.1f}")
        return ("fps " + " | ".join(parts)) if parts else "waiting"


def run_cell(cell: Cell, env: Environment, mp) -> tuple[dict, list[dict], CpuSampler]:
    """Run one cell; returns the producer's phases, each consumer's report and the CPU samples."""
    queue, go, stop, finish = mp.Queue(), mp.Event(), mp.Event(), mp.Event()
    # A bound on every child's life, should this process stop without telling them.
    deadline = time.time() + 3 * STARTUP_TIMEOUT + 2 * cell.seconds + 30
    procs: list = []
    sampler: CpuSampler | None = None
    status = err.status(str(cell)) if err.is_terminal else None
    live = LiveFigures(cell, status)
    try:
        if status is not None:
            status.start()
        procs.append(_start(mp, producer_process, queue, "producer", cell, go, finish, deadline))
        address = _collect(queue, "up", 1, procs, STARTUP_TIMEOUT, live)["producer"]
        for i in range(len(cell.consumers)):
            where = str(cell.ports[i]) if cell.system == "netgear" else address
            procs.append(_start(mp, consumer_process, queue, f"consumer {i}", cell, i, where,
                                stop, deadline))
        # Roles: "c<i>" for the fast consumers (their mean is shown), "slow" for the slow one.
        pids = {"producer": procs[0].pid}
        for i, (consumer, proc) in enumerate(zip(cell.consumers, procs[1:], strict=True)):
            pids["slow" if consumer.slow else f"c{i}"] = proc.pid
        if cell.framebus:
            pids["relay"] = env.relay.pid
        sampler = CpuSampler(pids)
        sampler.start()
        _collect(queue, "ready", len(cell.consumers), procs, STARTUP_TIMEOUT, live)
        go.set()
        phases = _collect(queue, "done", 1, procs, 2 * cell.seconds + 30, live)["producer"]
        time.sleep(GRACE)
        stop.set()
        reports = _collect(queue, "result", len(cell.consumers), procs, STARTUP_TIMEOUT, live)
        live.finish()
        # Consumers close while the producer's tail still sends: a NetGear receive thread
        # only sees its stop flag when a message wakes it.
        shutdown(procs[1:], patience=8.0)
        return phases, [reports[i] for i in range(len(cell.consumers))], sampler
    finally:
        if sampler is not None:
            sampler.stop()
        stop.set()
        finish.set()
        if status is not None:
            status.stop()
        shutdown(procs, patience=8.0)
        queue.close()


def _start(mp, target: Callable, queue, role, *args):
    return start_process(mp, _child, target, queue, role, *args)


def _collect(queue, kind: str, count: int, procs: list, timeout: float,
             live: LiveFigures) -> dict:
    """Wait for *count* messages of *kind*, by role; a child's error or death raises."""
    got: dict = {}
    end = time.monotonic() + timeout
    while len(got) < count:
        try:
            msg_kind, role, payload = queue.get(timeout=0.2)
        except queue_module.Empty:
            crashed = [f"{p.name} ({p.exitcode})" for p in procs if p.exitcode not in (None, 0)]
            if crashed:
                raise RuntimeError(f"{', '.join(crashed)} died waiting for '{kind}'") from None
            if time.monotonic() > end:
                raise RuntimeError(f"timed out waiting for '{kind}' ({len(got)} of {count})") \
                    from None
            continue
        if msg_kind == "tick":
            live.tick(role, payload)
        elif msg_kind == "phase":
            live.new_phase(*payload)
        elif msg_kind == "error":
            raise RuntimeError(f"{role} failed:\n{payload}")
        elif msg_kind == kind:
            got[role] = payload
        elif msg_kind != "ready":  # a late "ready" is harmless
            raise RuntimeError(f"expected '{kind}' from the children, got '{msg_kind}' from {role}")
    return got


# -- turning logs into figures ----------------------------------------------------------------


@dataclass
class Phase:
    """One consumer's figures in one phase."""

    fps: float
    share: float  # of the phase's frames, the part it received
    latency_ms: np.ndarray


@dataclass
class Row:
    cell: Cell
    producer_fps: dict[str, float] = field(default_factory=dict)  # by phase
    subject: list[dict[str, Phase]] = field(default_factory=list)  # fast tcp, or the shm one
    slow: dict[str, Phase] | None = None
    others: list[dict[str, Phase]] = field(default_factory=list)  # tcp ones beside an shm one
    cpu: dict[str, dict[str, float | None]] = field(default_factory=dict)  # phase -> role -> %
    notes: list[str] = field(default_factory=list)
    error: str | None = None

    def fps(self, phase: str) -> float | None:
        return float(np.mean([c[phase].fps for c in self.subject])) if self.subject else None

    def fast_fps(self, phase: str) -> list[float]:
        return [c[phase].fps for c in self.subject]

    def share(self, phase: str) -> float | None:
        return float(np.mean([c[phase].share for c in self.subject])) if self.subject else None

    def latency(self, phase: str) -> tuple[float, float] | None:
        return percentiles([c[phase].latency_ms for c in self.subject])

    def other_fps(self, phase: str) -> float | None:
        return float(np.mean([c[phase].fps for c in self.others])) if self.others else None


PHASES = ("paced", "flat")


def analyse(cell: Cell, phases: dict, reports: list[dict], sampler: CpuSampler) -> Row:
    row = Row(cell)
    for name in PHASES:
        p = phases[name]
        row.producer_fps[name] = (p["end"] - p["first"]) / ((p["t1"] - p["t0"]) / 1e9)
        row.cpu[name] = {role: sampler.percent(role, p["t0"], p["t1"]) for role in sampler.pids}
    for consumer, report in zip(cell.consumers, reports, strict=True):
        figures = {name: _phase_figures(report["samples"], phases[name], consumer.slow)
                   for name in PHASES}
        if consumer.slow:
            row.slow = figures
        elif consumer.transport == "shm" or not cell.local:
            row.subject.append(figures)
        else:
            row.others.append(figures)
    row.notes = _framebus_checks(cell, reports) if cell.framebus else []
    return row


def _phase_figures(samples: np.ndarray, phase: dict, slow: bool) -> Phase:
    """Rate: frames received within the phase. Latency: of the frames published in it, but
    for the slow consumer, of those it read within it (how old what it reads is)."""
    seq, t_write, t_recv = samples.T
    window = (phase["t1"] - phase["t0"]) / 1e9
    inside = (t_recv >= phase["t0"]) & (t_recv < phase["t1"])
    published = (seq >= phase["first"]) & (seq < phase["end"])
    if slow and np.count_nonzero(inside) >= 2:
        # A 2 fps reader gets 8 frames in 4 s: counting them is too coarse; its pace is not.
        t = np.sort(t_recv[inside])
        fps = (t.size - 1) / ((t[-1] - t[0]) / 1e9)
    else:
        fps = np.count_nonzero(inside) / window
    share = np.count_nonzero(published) / max(1, phase["end"] - phase["first"])
    latency = (t_recv - t_write)[inside if slow else published] / 1e6
    return Phase(float(fps), float(share), latency)


def _framebus_checks(cell: Cell, reports: list[dict]) -> list[str]:
    """What framebus subscribers say about themselves, against what they returned."""
    notes = []
    for i, (consumer, report) in enumerate(zip(cell.consumers, reports, strict=True)):
        seq = report["samples"][:, 0]
        if report.get("path") != consumer.transport:
            notes.append(f"consumer {i} asked for {consumer.transport} but took {report['path']}")
        if seq.size and np.any(np.diff(seq) <= 0):
            notes.append(f"consumer {i} returned frames out of order or twice")
        if report["received"] != seq.size:
            notes.append(f"consumer {i}: sub.received = {report['received']}, returned {seq.size}")
        if report["rejected"]:
            notes.append(f"consumer {i}: {report['rejected']} messages rejected")
    return notes


# -- output -----------------------------------------------------------------------------------

COLUMNS = ("size", "system", "consumers", "producer fps paced / flat",
           "fps/consumer paced (share)", "fps/consumer flat out", "latency ms paced p50/p99",
           "latency ms flat out p50/p99", "slow one: fps paced / flat",
           "slow one: latency ms p50 paced / flat", "CPU % flat out: prod / relay / consumer")


def _fps(value: float | None) -> str:
    if value is None or np.isnan(value):
        return "-"
    return f"{value:,.0f}" if value >= 100 else f"{value:.1f}"


def _cpu(row: Row, phase: str) -> str:
    cpu = row.cpu.get(phase, {})
    consumers = [v for k, v in cpu.items() if k.startswith("c") and v is not None]

    def pct(v: float | None) -> str:
        return "-" if v is None else f"{v:.0f}"

    return (f"{pct(cpu.get('producer'))} / {pct(cpu.get('relay'))} / "
            f"{pct(float(np.mean(consumers)) if consumers else None)}")


def _cells(row: Row) -> list[str]:
    c = row.cell
    head = [c.size, c.system, c.scenario]
    if row.error:
        return head + ["failed"] + [""] * (len(COLUMNS) - 4)
    slow = row.slow
    slow_fps = "-" if slow is None else f"{slow['paced'].fps:.2f} / {slow['flat'].fps:.2f}"
    slow_ms = "-" if slow is None else f"{_median_ms(slow, 'paced')} / {_median_ms(slow, 'flat')}"
    return head + [
        f"{row.producer_fps['paced']:,.0f} / {row.producer_fps['flat']:,.0f}",
        f"{_fps(row.fps('paced'))} ({row.share('paced'):.0%})",
        _fps(row.fps("flat")),
        format_pair(row.latency("paced")), format_pair(row.latency("flat")),
        slow_fps, slow_ms, _cpu(row, "flat")]


def caption(sizes: list[tuple[int, int]]) -> str:
    rates = ", ".join(f"{w}x{h}: {paced_rate(w, h):g} fps" for w, h in sizes)
    return (f"Paced: the producer publishes at a fixed rate ({rates}); flat out: as fast as it "
            "can (imagezmq's and NetGear's PUB sockets drop what their queues cannot take; "
            "framebus's producer copies every frame into its ring). fps/consumer: the fast "
            "consumers' mean (for '1 shm' rows, the local subscriber's), frames received "
            "within the phase; share: of the phase's frames, those it received. The slow "
            "consumer sleeps 0.5 s after each frame; its fps is its pace within the phase. "
            "Latency: producer's clock (framebus: at commit) to the consumer holding the array, "
            "decoded for JPEG. CPU: % of one core, per process (consumer: the fast ones' mean). "
            "framebus-jpeg: quality 90, encoded by the relay once per frame; netgear: PUB/SUB "
            f"(pattern=2), raw frames; imagezmq: PUB/SUB, receive queue {IMAGEZMQ_RCVHWM} "
            "frames.")


def rich_table(rows: list[Row], seconds: float, sizes: list[tuple[int, int]]) -> Table:
    table = Table(title=f"Remote frames over loopback TCP, bgr24, {seconds:g} s per phase",
                  header_style="bold")
    for name in COLUMNS:
        table.add_column(name, justify="left" if name in ("size", "system", "consumers")
                         else "right")
    previous = None
    for row in rows:
        key = (row.cell.size, row.cell.local)
        if previous is not None and key != previous:
            table.add_section()
        previous = key
        table.add_row(*_cells(row), style="bold" if row.cell.framebus else None)
    table.caption = caption(sizes)
    return table


def markdown_table(rows: list[Row], sizes: list[tuple[int, int]]) -> str:
    cells = [_cells(row) for row in rows]
    left = ("size", "system", "consumers")
    return common.markdown_table(COLUMNS, cells, left) + f"\n\n{caption(sizes)}"


@dataclass
class Target:
    what: str
    passed: bool | None  # None: not measured in this run
    detail: str


def targets(rows: list[Row]) -> tuple[list[Target], list[str]]:
    """The targets (PASS/MISS) and, beside them, the related figures that are not targets."""
    ok = [r for r in rows if not r.error]

    def get(system: str, size: str, consumers: tuple) -> Row | None:
        return next((r for r in ok if r.cell.system == system and r.cell.size == size
                     and r.cell.consumers == consumers), None)

    found: list[Target] = []
    info: list[str] = []
    hd = "1920x1080"
    fb, iz = get("framebus-raw", hd, SOLO), get("imagezmq", hd, SOLO)
    if fb and iz:
        a, b = fb.fps("flat"), iz.fps("flat")
        found.append(Target("1080p, 1 consumer: framebus-raw delivered fps >= imagezmq's (flat "
                            "out)", a >= b, f"{a:,.1f} vs {b:,.1f} fps = {a / b:.2f}x; paced "
                            f"{fb.fps('paced'):.1f} vs {iz.fps('paced'):.1f} fps"))
    else:
        found.append(Target("1080p, 1 consumer: framebus-raw fps >= imagezmq's", None, ""))
    for size in dict.fromkeys(r.cell.size for r in ok):
        for system in ("framebus-raw", "framebus-jpeg", "imagezmq", "netgear"):
            solo, four = get(system, size, SOLO), get(system, size, FOUR)
            if solo and four:
                found.append(_fairness_target(system, size, solo, four))
                info.append(_fairness_info(system, size, solo, four))
        alone = get("framebus-raw", size, SHM_ALONE)
        loaded = get("framebus-raw", size, SHM_LOADED)
        if alone and loaded:
            found.append(_local_target(size, alone, loaded))
            info += _local_info(size, alone, loaded)
    return found, info


def _fairness_target(system: str, size: str, solo: Row, four: Row) -> Target:
    """Paced: the three fast consumers keep >= 90% of the solo rate; the slow one reads ~2 fps."""
    base = solo.fps("paced")
    ratios = [f / base for f in four.fast_fps("paced")]
    slow = four.slow["paced"].fps if four.slow else float("nan")
    passed = min(ratios) >= 0.9 and 1.8 <= slow <= 2.05
    return Target(f"{size} {system}, 4 consumers (paced): 3 fast ones >= 90% of solo, slow ~2 fps",
                  passed, f"fast {', '.join(f'{r:.0%}' for r in ratios)} of {base:.1f} fps; "
                  f"slow {slow:.2f} fps, its frames {_median_ms(four.slow, 'paced')} ms old")


def _fairness_info(system: str, size: str, solo: Row, four: Row) -> str:
    base = solo.fps("flat")
    ratios = ", ".join(f"{f / base:.0%}" for f in four.fast_fps("flat"))
    return (f"{size} {system}, flat out: 3 fast consumers at {ratios} of solo ({base:,.1f} fps); "
            f"slow one {four.slow['flat'].fps:.2f} fps, frames "
            f"{_median_ms(four.slow, 'flat')} ms old")


def _median_ms(figures: dict[str, Phase] | None, phase: str) -> str:
    if figures is None or not figures[phase].latency_ms.size:
        return "-"
    return f"{np.median(figures[phase].latency_ms):,.1f}"


def _local_target(size: str, alone: Row, loaded: Row) -> Target:
    a, b = loaded.fps("paced"), alone.fps("paced")
    return Target(f"{size}: local shm subscriber's rate with 4 remote readers within 5% of alone "
                  "(paced)", abs(a / b - 1) <= 0.05,
                  f"{a:.1f} vs {b:.1f} fps = {a / b:.1%}; latency p50/p99 "
                  f"{format_pair(loaded.latency('paced'))} vs "
                  f"{format_pair(alone.latency('paced'))} ms")


def _local_info(size: str, alone: Row, loaded: Row) -> list[str]:
    pa, pb = loaded.producer_fps["flat"], alone.producer_fps["flat"]
    sa, sb = loaded.fps("flat"), alone.fps("flat")
    remote = loaded.other_fps("flat")
    producer = (f"{size}: producer flat out with 4 remote readers {pa:,.0f} vs {pb:,.0f} fps "
                f"alone = {pa / pb:.0%} (both with the local subscriber; the 4 remote ones got "
                f"{_fps(remote)} fps each)")
    local = (f"{size}: local shm subscriber flat out with 4 remote readers {sa:,.0f} vs "
             f"{sb:,.0f} fps alone = {sa / sb:.0%}; relay CPU "
             f"{_cpu_of(loaded, 'flat', 'relay')} flat out, {_cpu_of(loaded, 'paced', 'relay')} "
             "paced")
    return [producer, local]


def _cpu_of(row: Row, phase: str, role: str) -> str:
    value = row.cpu.get(phase, {}).get(role)
    return "-" if value is None else f"{value:.0f}%"


def print_targets(console: Console, found: list[Target], info: list[str]) -> None:
    console.print("\n[bold]Targets[/] (from this run)")
    for t in found:
        console.print(f"  {verdict(t.passed)} {t.what}" + (f": {t.detail}" if t.detail else
                                                 ": not measured in this run"), highlight=False)
    print_section(console, "Beside the targets", info, " (flat out, two cores: these ratios "
                  "include every process's share of the CPU)")


# -- where a remote frame's time goes: the pieces, measured alone ------------------------------


def frame_server_process(queue, shape: tuple[int, ...], stop) -> None:
    """A ROUTER that answers each request with one raw frame, as the relay does (zero-copy)."""
    pixels = TestPattern(shape).frame(0)
    context = zmq.Context()
    router = context.socket(zmq.ROUTER)
    router.linger = 0
    router.bind("tcp://127.0.0.1:*")
    queue.put(("up", "server", router.last_endpoint.decode()))
    header = bytes(200)  # about a descriptor's size
    try:
        while not stop.is_set():
            if router.poll(100):
                identity, _ = router.recv_multipart()
                router.send_multipart([identity, b"frame", header, b"raw", pixels], copy=False)
    finally:
        router.close(0)
        context.term()


def wire_rate(endpoint: str, shape: tuple[int, ...], in_flight: int, seconds: float) -> float:
    """Frames/s a DEALER gets keeping *in_flight* requests outstanding (the relay's credits)."""
    context = zmq.Context()
    dealer = context.socket(zmq.DEALER)
    dealer.linger = 0
    dealer.connect(endpoint)
    request = bytes(120)  # about a `want`'s size
    try:
        for _ in range(in_flight):
            dealer.send(request)
        dealer.recv_multipart(copy=False)  # connected and warm
        dealer.send(request)
        count, start = 0, time.perf_counter()
        while (elapsed := time.perf_counter() - start) < seconds:
            parts = dealer.recv_multipart(copy=False)
            np.frombuffer(parts[-1].buffer, np.uint8).reshape(shape)
            count += 1
            dealer.send(request)
        return count / elapsed
    finally:
        dealer.close(0)
        context.term()


def _per_frame_ms(step: Callable[[], object], seconds: float) -> float:
    return 1000.0 / loop_rate(step, seconds)


def path_costs(width: int, height: int, seconds: float, mp) -> dict[str, float]:
    """The remote path's pieces for one frame size, each alone (ms per frame, frames/s)."""
    shape = (height, width, 3)
    image = TestPattern(shape).frame(0)
    reused = np.empty_like(image)
    _, jpeg = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    costs = {
        "copy out, new array (relay)": _per_frame_ms(lambda: image.copy(), seconds),
        "copy out, reused buffer": _per_frame_ms(lambda: np.copyto(reused, image), seconds),
        "JPEG encode q90 (relay)": _per_frame_ms(
            lambda: cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY]),
            seconds),
        "JPEG decode (subscriber)": _per_frame_ms(
            lambda: cv2.imdecode(jpeg, cv2.IMREAD_UNCHANGED), seconds),
        "JPEG size KB": jpeg.size / 1000,
    }
    queue, stop = mp.Queue(), mp.Event()
    server = _start(mp, frame_server_process, queue, "server", shape, stop)
    try:
        role_kind, _, endpoint = queue.get(timeout=STARTUP_TIMEOUT)
        if role_kind != "up":
            raise RuntimeError(f"frame server failed:\n{endpoint}")
        for k in (1, 2, 4):
            costs[f"wire fps, {k} request(s) in flight"] = wire_rate(endpoint, shape, k, seconds)
    finally:
        stop.set()
        shutdown([server], patience=8.0)
        queue.close()
    return costs


def print_costs(console: Console, costs: dict[str, dict[str, float]]) -> None:
    console.print("\n[bold]The remote path's pieces, each measured alone[/] (before the cells: "
                  "ms per frame, or frames/s of a ROUTER answering each request with one raw "
                  "frame over loopback, as the relay does)")
    for size, c in costs.items():
        parts = [f"{k} {v:.2f} ms" for k, v in c.items() if not k.startswith(("wire", "JPEG s"))]
        parts.append(f"JPEG {c['JPEG size KB']:,.0f} KB")
        wires = [f"{k.split(', ')[1]}: {v:,.0f}" for k, v in c.items() if k.startswith("wire")]
        console.print(f"  {size}: " + "; ".join(parts), highlight=False)
        console.print(f"  {size}: wire fps, " + ", ".join(wires), highlight=False)


def print_notes(console: Console, rows: list[Row], env: Environment,
                load: tuple[float, float]) -> None:
    lines = [(f"machine: {os.cpu_count()} cores; 1-minute load {load[0]:.2f} at the start, "
              f"{load[1]:.2f} at the end")]
    for row in rows:
        if row.error:
            lines.append(f"{row.cell}: [red]failed[/]: {row.error.strip().splitlines()[-1]}")
            continue
        if row.cell.framebus:
            lines.append(f"{row.cell}: CPU % paced prod / relay / consumer {_cpu(row, 'paced')}")
        if row.others:
            lines.append(f"{row.cell}: the 4 remote consumers beside it got "
                         f"{_fps(row.other_fps('paced'))} fps paced, "
                         f"{_fps(row.other_fps('flat'))} flat out, latency p50/p99 paced "
                         f"{format_pair(percentiles([o['paced'].latency_ms for o in row.others]))}"
                         " ms")
        lines += [f"{row.cell}: {note}" for note in row.notes]
    if env.relay_restarts:
        lines.append(f"the relay died and was restarted {env.relay_restarts} time(s)")
    lines += [f"left behind by a producer (removed now): {item}" for item in env.leftovers]
    print_section(console, "Notes", lines)  # never empty: the machine line comes first


# -- command line -----------------------------------------------------------------------------


def plan(env: Environment, seconds: float, sizes: list[tuple[int, int]],
         systems: list[str]) -> list[Cell]:
    cells = []
    for w, h in sizes:
        for system in systems:
            scenarios = (SHM_ALONE, SHM_LOADED) if system == "local" else (SOLO, FOUR)
            for consumers in scenarios:
                ports = tuple(free_port() for _ in consumers) if system == "netgear" else ()
                cells.append(Cell("framebus-raw" if system == "local" else system, w, h,
                                  consumers, seconds, env.stream_name(system), env.address,
                                  ports))
    return cells


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--seconds", type=click.FloatRange(min=1.0), default=4.0, show_default=True,
              help="Length of each phase (paced, then flat out) of every cell.")
@click.option("--sizes", default=DEFAULT_SIZES, show_default=True, callback=parse_sizes,
              help="Frame sizes, WIDTHxHEIGHT, comma-separated.")
@click.option("--systems", default=",".join(SYSTEMS), show_default=True,
              callback=parse_systems(SYSTEMS),
              help="Systems to compare, comma-separated ('local': framebus's shm subscriber "
                   "alone and beside 4 remote readers).")
@click.option("--markdown", is_flag=True, help="Also print the table as Markdown.")
def main(seconds: float, sizes: list[tuple[int, int]], systems: list[str],
         markdown: bool) -> None:
    """Frames to consumers over loopback TCP: framebus's relay (raw, JPEG), imagezmq, NetGear."""
    exit_on_sigterm(143)
    load_start = os.getloadavg()[0]
    err.print(f"{os.cpu_count()} cores, 1-minute load {load_start:.2f}", highlight=False)
    mp = get_context("spawn")
    env = Environment()
    costs: dict[str, dict[str, float]] = {}
    try:
        if any(s.startswith("framebus") or s == "local" for s in systems):
            err.print("measuring the remote path's pieces ...", highlight=False)
            costs = {f"{w}x{h}": path_costs(w, h, max(0.4, seconds / 8), mp) for w, h in sizes}
            env.start_broker()
            env.ensure_relay()
        elif "imagezmq" in systems or "netgear" in systems:
            env.start_broker()  # unused by them, but cheap, and keeps one code path
        rows = run_all(env, plan(env, seconds, sizes, systems), mp)
    except KeyboardInterrupt:
        err.print("\n[red]interrupted[/]: children, broker and relay stopped, rings removed")
        sys.exit(130)
    finally:
        env.close()
    out = Console(width=None if sys.stdout.isatty() else 230)  # a pipe gets full rows too
    out.print(rich_table(rows, seconds, sizes))
    if markdown:
        out.print()
        out.print(markdown_table(rows, sizes), markup=False, highlight=False, soft_wrap=True)
    print_targets(out, *targets(rows))
    if costs:
        print_costs(out, costs)
    print_notes(out, rows, env, (load_start, os.getloadavg()[0]))


def run_all(env: Environment, cells: list[Cell], mp) -> list[Row]:
    """Every cell, one after the other, with progress on stderr."""
    rows = []
    started = time.monotonic()
    for i, cell in enumerate(cells, 1):
        err.print(f"[{i:2}/{len(cells)}] {cell} ...", highlight=False)
        t0 = time.monotonic()
        try:
            if cell.framebus:
                env.ensure_relay()
            row = analyse(cell, *run_cell(cell, env, mp))
            err.print(f"    {_fps(row.fps('paced'))} fps paced, {_fps(row.fps('flat'))} flat out "
                      f"per consumer ({time.monotonic() - t0:.1f} s)", highlight=False)
        except RuntimeError as exc:
            row = Row(cell, error=str(exc))
            err.print(f"    [red]failed[/]\n{exc}", highlight=False)
        finally:
            env.sweep()
        rows.append(row)
    err.print(f"all {len(cells)} cells in {time.monotonic() - started:.0f} s", highlight=False)
    return rows


if __name__ == "__main__":
    main()
