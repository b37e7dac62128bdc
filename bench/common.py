"""Pieces the benchmarks in bench/ share (bench.bus, bench.decode, bench.remote).

What is here is the same in every script that uses it: the framebus and imagezmq senders
and receivers, the producer's warm-up and publishing loop, starting and stopping child
processes, a broker served in a thread, the sweep of leftover rings, a free loopback port,
CPU time from /proc, percentile and table formatting, and the click option parsers.
Where scripts differ on purpose (a queue bound, a patience), that is a parameter.

The benchmarks are packages, run from the repository root as ``python -m bench.NAME``,
and import it as ``from bench.common import ...``; their spawned children find it the same
way, as multiprocessing gives them the parent's module search path.
"""

from __future__ import annotations

import os
import queue as queue_module
import socket
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from fractions import Fraction
from pathlib import Path
from typing import Protocol

import click
import numpy as np
import posix_ipc
from rich.console import Console

import framebus
from framebus.broker import Broker

#: framebus ring depth of the bus benchmarks; raw pyzmq gets a send/receive queue of the same
#: order (bench.bus's ZMQ_HWM).
SLOTS = 8
#: The producer's clock, time.time_ns(), travels as the frame's pts in this time base.
NANOSECONDS = Fraction(1, 10**9)
CLOCK_TICK = os.sysconf("SC_CLK_TCK")


# -- senders and receivers -------------------------------------------------------------------


class StreamCell(Protocol):
    """What a framebus sender needs of a benchmark cell."""

    stream: str
    shape: tuple[int, int, int]
    broker: str


class Sender(Protocol):
    address: str  # what receivers need to find this producer

    def send(self, image: np.ndarray, seq: int, t_start: int) -> None: ...

    def close(self) -> None: ...


class FramebusSender:
    """framebus.Publisher.publish: one copy into the next ring slot, then a descriptor."""

    def __init__(self, cell: StreamCell) -> None:
        # pts carries the clock before the copy, so subscribers can also tell the latency
        # including the copy; the descriptor's own timestamp_ns is taken at commit.
        self.pub = framebus.Publisher(cell.stream, shape=cell.shape, fmt="bgr24", slots=SLOTS,
                                      broker=cell.broker, time_base=NANOSECONDS)
        self.address = cell.stream

    def send(self, image: np.ndarray, seq: int, t_start: int) -> None:
        self.pub.publish(image, pts=t_start)

    def close(self) -> None:
        self.pub.close()  # unlinks the ring and the descriptor socket


class ImagezmqSender:
    """imagezmq.ImageSender in PUB/SUB mode; seq and clock travel in the message text."""

    def __init__(self, cell: object = None) -> None:  # the cell: for the scripts' factories
        import imagezmq

        self.sender = imagezmq.ImageSender(connect_to="tcp://127.0.0.1:*", REQ_REP=False)
        self.address = self.sender.zmq_socket.last_endpoint.decode()

    def send(self, image: np.ndarray, seq: int, t_start: int) -> None:
        self.sender.send_image(f"{seq} {t_start}", image)

    def close(self) -> None:
        self.sender.zmq_socket.linger = 0  # or close() waits for every queued frame
        self.sender.close()


class ImagezmqReceiver:
    """imagezmq.ImageHub in PUB/SUB mode (it wraps the message with np.frombuffer).

    *rcvhwm* None leaves its receive queue as shipped (1000 frames); a number bounds it.
    """

    def __init__(self, address: str, rcvhwm: int | None = None) -> None:
        import imagezmq

        self.hub = imagezmq.ImageHub(open_port=address, REQ_REP=False)
        if rcvhwm is not None:
            # The hub connects in its constructor, before a high-water mark can apply: reconnect.
            self.hub.zmq_socket.disconnect(address)
            self.hub.zmq_socket.rcvhwm = rcvhwm
            self.hub.zmq_socket.connect(address)
        self.held: np.ndarray | None = None

    def recv(self, timeout: float) -> tuple[int, int, int] | None:
        """(seq, producer clock, own clock once it holds the array), or None on timeout."""
        if not self.hub.zmq_socket.poll(int(timeout * 1000)):  # recv_image has no timeout
            return None
        text, self.held = self.hub.recv_image()
        t_recv = time.time_ns()
        seq, t_start = map(int, text.split())
        return seq, t_start, t_recv

    def stats(self) -> dict:
        return {}

    def close(self) -> None:
        self.held = None
        self.hub.zmq_socket.linger = 0
        self.hub.close()


# -- the producer's loops ----------------------------------------------------------------------


class Aborted(Exception):
    """The main process gave up on the cell; the child just cleans up."""


def warm_up(sender: Sender, image: np.ndarray, go, stop, deadline: float, fps: float) -> int:
    """Publish at *fps* until *go* (every reader has a frame); returns the next seq."""
    seq = 0
    while not go.is_set():
        if stop.is_set() or time.time() > deadline:
            raise Aborted
        sender.send(image, seq, time.time_ns())
        seq += 1
        go.wait(1.0 / fps)
    return seq


def publish_for(sender: Sender, image: np.ndarray, seq: int, seconds: float,
                fps: float) -> dict:
    """Publish from *seq* for *seconds* at *fps* (0: flat out); the phase's seqs and times."""
    first, period = seq, (1.0 / fps if fps else 0.0)
    t0 = time.time_ns()
    start = time.monotonic()
    while (now := time.monotonic()) < start + seconds:
        if period:
            due = start + (seq - first) * period  # against the clock: a slow send delays none
            if due > now:
                time.sleep(due - now)
        sender.send(image, seq, time.time_ns())
        seq += 1
    return {"first": first, "end": seq, "t0": t0, "t1": time.time_ns(), "fps": fps}


def loop_rate(step: Callable[[], object], seconds: float) -> float:
    """Calls of *step* per second, calling it for *seconds*."""
    count, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        step()
        count += 1
    return count / elapsed


# -- child processes ---------------------------------------------------------------------------


def start_process(mp, entry: Callable, target: Callable, queue, role, *args):
    """Spawn *entry*(target, queue, role, *args) as a process named after *role*."""
    proc = mp.Process(target=entry, args=(target, queue, role, *args), name=f"bench-{role}")
    proc.start()
    return proc


#: How long a benchmark child has after SIGTERM before it is SIGKILLed. A child is stopped
#: with framebus.support.children.stop_all(procs, STOP_TIMEOUT, patience=...): given that
#: patience to end by itself first, then SIGTERMed, then killed.
STOP_TIMEOUT = 2.0


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of *pid*, all its threads; None once it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()  # after "pid (comm)", which may hold spaces
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICK


# -- a private framebus namespace ----------------------------------------------------------------


def free_port() -> int:
    """A TCP port free on the loopback interface right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ThreadBroker:
    """A framebus broker served in a thread of this process, until stop()."""

    def __init__(self, address: str) -> None:
        self.address = address
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        broker = Broker(self.address)

        def serve() -> None:
            try:
                broker.run(self._stop)
            finally:
                broker.close()

        self._thread = threading.Thread(target=serve, name="bench-broker", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5.0)


def sweep_rings(prefix: str) -> list[str]:
    """Unlink every ring named *prefix*.* still in /dev/shm; the names of those removed."""
    removed = []
    for entry in Path("/dev/shm").glob(f"{prefix}.*"):
        try:
            posix_ipc.unlink_shared_memory("/" + entry.name)
            removed.append(entry.name)
        except posix_ipc.ExistentialError:
            pass  # the broker reclaimed it meanwhile
    return removed


# -- figures and output ------------------------------------------------------------------------


def percentiles(chunks: list[np.ndarray]) -> tuple[float, float] | None:
    """p50 and p99 of all the values of *chunks*; None if there are none."""
    values = np.concatenate(chunks) if chunks else np.empty(0)
    if not values.size:
        return None
    p50, p99 = np.percentile(values, [50, 99])
    return float(p50), float(p99)


def format_pair(values: tuple[float, float] | None, digits: int = 2) -> str:
    """"a / b", or "-" for nothing measured."""
    return "-" if values is None else f"{values[0]:.{digits}f} / {values[1]:.{digits}f}"


def verdict(passed: bool | None) -> str:
    """A target's verdict in rich markup: PASS, MISS, or n/a when not measured."""
    if passed is None:
        return "[dim]n/a [/]"
    return "[green]PASS[/]" if passed else "[red]MISS[/]"


def markdown_table(columns: Sequence[str], cells: Iterable[Sequence[str]],
                   left: Sequence[str]) -> str:
    """A Markdown table; the *left* columns left-aligned, the others right-aligned."""
    lines = ["| " + " | ".join(columns) + " |",
             "|" + "|".join("---" if n in left else "---:" for n in columns) + "|"]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in cells]
    return "\n".join(lines)


def print_section(console: Console, heading: str, lines: list[str], aside: str = "") -> None:
    """A bold heading (then *aside*) and the lines under it, indented; nothing if no lines."""
    if not lines:
        return
    console.print(f"\n[bold]{heading}[/]{aside}")
    for line in lines:
        console.print(f"  {line}", highlight=False)


# -- command line ------------------------------------------------------------------------------


def parse_sizes(ctx, param, value: str) -> list[tuple[int, int]]:
    """click callback: WIDTHxHEIGHT[,WIDTHxHEIGHT...]."""
    try:
        sizes = [tuple(int(n) for n in item.lower().split("x")) for item in value.split(",")]
        if all(len(s) == 2 and s[0] > 0 and s[1] > 0 for s in sizes):
            return sizes
    except ValueError:
        pass
    raise click.BadParameter(f"expected WIDTHxHEIGHT[,WIDTHxHEIGHT...], got {value!r}")


def parse_systems(choices: Sequence[str]) -> Callable[..., list[str]]:
    """click callback: a comma-separated list of names among *choices*."""

    def parse(ctx, param, value: str) -> list[str]:
        chosen = [s.strip() for s in value.split(",")]
        unknown = [s for s in chosen if s not in choices]
        if unknown:
            raise click.BadParameter(f"unknown system(s) {unknown}; choose among {list(choices)}")
        return chosen

    return parse


# -- messages from the children ----------------------------------------------------------------

def collect(queue, kind: str, count: int, procs: list, timeout: float,
            other: Callable[[str, object, object], bool] | None = None) -> dict:
    """Wait for *count* messages of *kind* from the children, by role; a child's error or
    death, or the timeout, raises. *other(kind, role, payload)* may take messages of other
    kinds (live figures, say): it returns whether it did."""
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
        if msg_kind == "error":
            raise RuntimeError(f"{role} failed:\n{payload}")
        if msg_kind == kind:
            got[role] = payload
        elif other is None or not other(msg_kind, role, payload):
            raise RuntimeError(f"expected '{kind}' from the children, got '{msg_kind}' from {role}")
    return got
