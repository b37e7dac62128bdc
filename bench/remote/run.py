"""Running the remote benchmark's cells from the main process: the CPU of every process of a
cell, the broker, the relay and the namespace it owns, the live figures, the cleanup."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from bench.common import (
    STOP_TIMEOUT,
    collect,
    cpu_seconds,
    free_port,
    start_process,
    sweep_rings,
)
from bench.remote.cell import GRACE, STARTUP_TIMEOUT, Cell, err
from bench.remote.children import child_entry, consumer_process, producer_process
from framebus.discovery import BrokerClient
from framebus.errors import FramebusError
from framebus.support.children import PARENT_ENV, framebus_command, stop_all
from framebus.support.children import stop as stop_child

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
            return subprocess.Popen(framebus_command(args),
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
            if proc is not None:
                stop_child(proc)  # SIGTERM: framebus unwinds and closes its sockets; SIGKILL in 5 s
        self.sweep()
        shutil.rmtree(self.runtime_dir, ignore_errors=True)


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
        procs.append(start_child(mp, producer_process, queue, "producer", cell, go, finish,
                                 deadline))
        address = collect(queue, "up", 1, procs, STARTUP_TIMEOUT, _live(live))["producer"]
        for i in range(len(cell.consumers)):
            where = str(cell.ports[i]) if cell.system == "netgear" else address
            procs.append(start_child(mp, consumer_process, queue, f"consumer {i}", cell, i, where,
                                stop, deadline))
        # Roles: "c<i>" for the fast consumers (their mean is shown), "slow" for the slow one.
        pids = {"producer": procs[0].pid}
        for i, (consumer, proc) in enumerate(zip(cell.consumers, procs[1:], strict=True)):
            pids["slow" if consumer.slow else f"c{i}"] = proc.pid
        if cell.framebus:
            pids["relay"] = env.relay.pid
        sampler = CpuSampler(pids)
        sampler.start()
        collect(queue, "ready", len(cell.consumers), procs, STARTUP_TIMEOUT, _live(live))
        go.set()
        phases = collect(queue, "done", 1, procs, 2 * cell.seconds + 30, _live(live))["producer"]
        time.sleep(GRACE)
        stop.set()
        reports = collect(queue, "result", len(cell.consumers), procs, STARTUP_TIMEOUT, _live(live))
        live.finish()
        # Consumers close while the producer's tail still sends: a NetGear receive thread
        # only sees its stop flag when a message wakes it.
        stop_all(procs[1:], STOP_TIMEOUT, patience=8.0)
        return phases, [reports[i] for i in range(len(cell.consumers))], sampler
    finally:
        if sampler is not None:
            sampler.stop()
        stop.set()
        finish.set()
        if status is not None:
            status.stop()
        stop_all(procs, STOP_TIMEOUT, patience=8.0)
        queue.close()


def start_child(mp, target: Callable, queue, role, *args):
    return start_process(mp, child_entry, target, queue, role, *args)


def _live(live: LiveFigures) -> Callable[[str, object, object], bool]:
    """What the children say besides their results: live figures for the display."""
    def take(kind: str, role: object, payload: object) -> bool:
        if kind == "tick":
            live.tick(role, payload)
        elif kind == "phase":
            live.new_phase(*payload)  # type: ignore[misc]
        return kind in ("tick", "phase", "ready")  # a late "ready" is harmless
    return take
