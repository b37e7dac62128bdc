#!/usr/bin/env python
"""Benchmark: framebus against raw pyzmq and imagezmq, one producer to N local subscribers.

Every cell of the benchmark is one (frame size, subscriber count, system). A cell starts a
producer process and N subscriber processes, publishes at 30 fps until every subscriber has
received a frame (warm-up), then runs two phases, one after the other:

  paced     30 fps, like a live camera: latency when nothing is overloaded;
  flat out  as fast as the producer can: delivered rate, drops, latency under load.

Each frame carries the producer's clock (time.time_ns(), one host, so one clock). The
subscribers only log (seq, timestamps) per frame; the main process does the arithmetic,
prints one table row per cell, then the targets (ratios between cells of this run).

From the repository root:

    .venv/bin/python bench/bus.py [--seconds 3] [--sizes 640x480,1920x1080,3840x2160]
                                  [--subs 1,4] [--systems framebus,zmq,imagezmq] [--markdown]
"""

from __future__ import annotations

import itertools
import os
import queue as queue_module
import shutil
import signal
import struct
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Protocol

import click
import common
import numpy as np
import posix_ipc
import zmq
from common import (
    SLOTS,
    Aborted,
    FramebusSender,
    ImagezmqSender,
    Sender,
    ThreadBroker,
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
    verdict,
    warm_up,
)
from rich.console import Console
from rich.table import Table

import framebus
from framebus import config
from framebus.testsrc import TestPattern

SYSTEMS = ("framebus", "zmq", "imagezmq")
DEFAULT_SIZES = "640x480,1920x1080,3840x2160"
PACED_FPS = 30.0
#: High-water mark (messages) of the raw pyzmq sockets: as many frames as the framebus ring
#: holds. The default, 1000, would let a flat-out 4K stream queue gigabytes and seconds of
#: latency. imagezmq is left as it ships (1000): its socket binds before it can be tuned.
ZMQ_HWM = SLOTS
#: After the flat-out phase, subscribers get this long to take frames still in flight
#: before they stop; frames that have not arrived by then count as dropped.
GRACE = 0.5
STARTUP_TIMEOUT = 30.0
RECV_TIMEOUT = 0.05
SHM_PREFIX = "fbbench"
#: A pause between the paced and the flat-out phase. Without it the last paced frame is
#: replaced at once by the first flat-out one, and a framebus subscriber, which keeps only
#: the newest descriptor, rightly skips it.
PHASE_GAP = 0.2

err = Console(stderr=True)


# -- what one cell measures ----------------------------------------------------------------


@dataclass(frozen=True)
class Cell:
    system: str
    width: int
    height: int
    subs: int
    seconds: float
    stream: str  # framebus stream name, unique to this run and cell
    broker: str  # framebus broker endpoint

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.height, self.width, 3)

    @property
    def frame_bytes(self) -> int:
        return self.width * self.height * 3

    @property
    def size(self) -> str:
        return f"{self.width}x{self.height}"

    def __str__(self) -> str:
        return f"{self.system} {self.size}, {subscribers(self.subs)}"


def subscribers(count: int) -> str:
    return f"{count} sub" if count == 1 else f"{count} subs"


# -- the three systems: a Sender (in the producer) and a Receiver (in each subscriber) --------
#
# Sender.send gets the producer's clock taken just before the call. Receiver.recv returns
# (seq, t_write, t_start, t_recv): t_write is the system's own "frame written" stamp, t_start
# the producer's clock before send, t_recv the subscriber's clock once it holds the array.


class Receiver(Protocol):
    def recv(self, timeout: float) -> tuple[int, int, int, int] | None: ...

    def stats(self) -> dict: ...

    def close(self) -> None: ...


class FramebusReceiver:
    """framebus.Subscriber in its default "latest" mode; the array is a view of the slot."""

    def __init__(self, cell: Cell, address: str) -> None:
        self.sub = framebus.Subscriber(address, broker=cell.broker)
        self.held: np.ndarray | None = None
        self.overwritten = 0  # frames whose slot was already reused once we held them

    def recv(self, timeout: float) -> tuple[int, int, int, int] | None:
        try:
            frame = self.sub.recv(timeout=timeout)
        except framebus.Timeout:
            return None
        self.held = frame.array
        t_recv = time.time_ns()
        if not frame.valid():
            self.overwritten += 1
        return frame.seq, frame.timestamp_ns, frame.pts, t_recv

    def stats(self) -> dict:
        return {"dropped": self.sub.dropped, "received": self.sub.received,
                "rejected": self.sub.rejected, "overwritten": self.overwritten}

    def close(self) -> None:
        self.held = None  # let the ring's mapping go
        self.sub.close()


HEADER = struct.Struct("<qq")  # seq, producer clock (ns)


class ZmqSender:
    """Raw pyzmq PUB: [header, pixels], the pixels sent zero-copy from the numpy buffer."""

    def __init__(self, cell: Cell) -> None:
        self.context = zmq.Context()
        self.socket = self.context.socket(zmq.PUB)
        self.socket.linger = 0
        self.socket.sndhwm = ZMQ_HWM
        self.socket.bind("tcp://127.0.0.1:*")  # a free port, chosen by the kernel
        self.address = self.socket.last_endpoint.decode()

    def send(self, image: np.ndarray, seq: int, t_start: int) -> None:
        self.socket.send_multipart([HEADER.pack(seq, t_start), image], copy=False)

    def close(self) -> None:
        self.socket.close(linger=0)
        self.context.term()


class ZmqReceiver:
    """Raw pyzmq SUB: receives without copying and wraps the message with np.frombuffer."""

    def __init__(self, cell: Cell, address: str) -> None:
        self.shape = cell.shape
        self.context = zmq.Context()
        self.socket = self.context.socket(zmq.SUB)
        self.socket.linger = 0
        self.socket.rcvhwm = ZMQ_HWM
        self.socket.subscribe(b"")
        self.socket.connect(address)
        self.held: np.ndarray | None = None

    def recv(self, timeout: float) -> tuple[int, int, int, int] | None:
        if not self.socket.poll(int(timeout * 1000)):
            return None
        header, pixels = self.socket.recv_multipart(copy=False)
        self.held = np.frombuffer(pixels, np.uint8).reshape(self.shape)
        t_recv = time.time_ns()
        seq, t_start = HEADER.unpack(header.bytes)
        return seq, t_start, t_start, t_recv

    def stats(self) -> dict:
        return {}

    def close(self) -> None:
        self.held = None
        self.socket.close(linger=0)
        self.context.term()


class ImagezmqReceiver(common.ImagezmqReceiver):
    """imagezmq.ImageHub in PUB/SUB mode, its receive queue as shipped (1000 frames)."""

    def __init__(self, cell: Cell, address: str) -> None:
        super().__init__(address)

    def recv(self, timeout: float) -> tuple[int, int, int, int] | None:
        sample = super().recv(timeout)
        if sample is None:
            return None
        seq, t_start, t_recv = sample
        return seq, t_start, t_start, t_recv


SENDERS: dict[str, Callable[[Cell], Sender]] = {
    "framebus": FramebusSender, "zmq": ZmqSender, "imagezmq": ImagezmqSender}
RECEIVERS: dict[str, Callable[[Cell, str], Receiver]] = {
    "framebus": FramebusReceiver, "zmq": ZmqReceiver, "imagezmq": ImagezmqReceiver}


# -- the child processes ----------------------------------------------------------------------
#
# They talk to the main process through one queue of (kind, role, payload) messages, with
# plain payloads only (classes of this script pickle badly between __main__ and __mp_main__).


def _child(target: Callable, queue, role, *args) -> None:
    """Entry point of every child: SIGTERM unwinds like Ctrl-C, so `finally` blocks run."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        target(queue, *args)
    except (KeyboardInterrupt, SystemExit, Aborted):
        pass
    except BaseException:
        queue.put(("error", role, traceback.format_exc()))


def producer_process(queue, cell: Cell, go, stop, deadline: float) -> None:
    image = TestPattern(cell.shape).frame(0)
    sender = SENDERS[cell.system](cell)
    try:
        queue.put(("up", "producer", sender.address))
        seq = warm_up(sender, image, go, stop, deadline, PACED_FPS)
        paced = publish_for(sender, image, seq, cell.seconds, PACED_FPS)
        time.sleep(PHASE_GAP)
        flat = publish_for(sender, image, paced["end"], cell.seconds, fps=0.0)
        queue.put(("done", "producer", {"paced": paced, "flat": flat}))
        # Keep the socket open while the subscribers take what is still in flight.
        stop.wait(max(0.0, deadline - time.time()))
    finally:
        sender.close()


def consumer_process(queue, cell: Cell, index: int, address: str, stop,
                     deadline: float) -> None:
    receiver = RECEIVERS[cell.system](cell, address)
    try:
        samples: list[tuple[int, int, int, int]] = []
        next_check = 0.0
        while True:
            # Looking at the Event takes locks: do it 50 times a second, not per frame.
            now = time.monotonic()
            if now >= next_check:
                if stop.is_set() or time.time() > deadline:
                    break
                next_check = now + 0.02
            sample = receiver.recv(RECV_TIMEOUT)
            if sample is None:
                continue
            if not samples:
                queue.put(("ready", index, None))
            samples.append(sample)
        log = np.array(samples, np.int64).reshape(-1, 4)
        queue.put(("result", index, {"samples": log, **receiver.stats()}))
    finally:
        receiver.close()


# -- running a cell from the main process -----------------------------------------------------


def run_cell(cell: Cell, mp) -> tuple[dict, list[dict]]:
    """Run one cell; returns the producer's phases and each subscriber's report."""
    queue, go, stop = mp.Queue(), mp.Event(), mp.Event()
    # A bound on every child's life, should this process die without stopping them.
    deadline = time.time() + 2 * STARTUP_TIMEOUT + 2 * cell.seconds + PHASE_GAP + 30
    procs: list = []
    try:
        procs.append(_start(mp, producer_process, queue, "producer", cell, go, stop, deadline))
        address = _collect(queue, "up", 1, procs, STARTUP_TIMEOUT)["producer"]
        for i in range(cell.subs):
            procs.append(_start(mp, consumer_process, queue, i, cell, i, address, stop, deadline))
        _collect(queue, "ready", cell.subs, procs, STARTUP_TIMEOUT)
        go.set()
        phases = _collect(queue, "done", 1, procs, 2 * cell.seconds + 30)["producer"]
        time.sleep(GRACE)
        stop.set()
        reports = _collect(queue, "result", cell.subs, procs, STARTUP_TIMEOUT)
        return phases, [reports[i] for i in range(cell.subs)]
    finally:
        stop.set()
        shutdown(procs, patience=5.0)
        queue.close()


def _start(mp, target: Callable, queue, role, *args):
    return start_process(mp, _child, target, queue, role, *args)


def _collect(queue, kind: str, count: int, procs: list, timeout: float) -> dict:
    """Wait for *count* messages of *kind*, by role; a child's error or death raises."""
    got: dict = {}
    end = time.monotonic() + timeout
    while len(got) < count:
        try:
            msg_kind, role, payload = queue.get(timeout=0.2)
        except queue_module.Empty:
            crashed = [p.name for p in procs if p.exitcode not in (None, 0)]
            if crashed:
                raise RuntimeError(f"{', '.join(crashed)} died waiting for '{kind}'") from None
            if time.monotonic() > end:
                raise RuntimeError(f"timed out waiting for '{kind}' "
                                   f"({len(got)} of {count})") from None
            continue
        if msg_kind == "error":
            raise RuntimeError(f"{role} failed:\n{payload}")
        if msg_kind != kind:
            raise RuntimeError(f"expected '{kind}' from the children, "
                               f"got '{msg_kind}' from {role}")
        got[role] = payload
    return got


# -- the framebus pieces owned by the main process: broker, namespace, cleanup ----------------


class FramebusEnvironment:
    """A private broker, shared-memory prefix and socket directory for the framebus cells."""

    def __init__(self) -> None:
        self.runtime_dir = tempfile.mkdtemp(prefix="fbbench-")
        os.environ["FRAMEBUS_SHM_PREFIX"] = SHM_PREFIX  # children inherit both
        os.environ["FRAMEBUS_RUNTIME_DIR"] = self.runtime_dir
        self.address = f"tcp://127.0.0.1:{free_port()}"
        self.streams: list[str] = []
        self.leftovers: list[str] = []  # what producers left behind: a framebus bug
        self.broker = ThreadBroker(self.address)

    def start_broker(self) -> None:
        self.broker.start()

    def stream_name(self, system: str, size: str, subs: int) -> str:
        name = f"bench{os.getpid()}-{system}-{size}-{subs}"
        self.streams.append(name)
        return name

    def sweep(self, stream: str) -> None:
        """Remove the ring and socket of *stream* if its producer did not, and note it."""
        try:
            posix_ipc.unlink_shared_memory(config.segment_name(stream))
            self.leftovers.append(f"ring {config.segment_name(stream)}")
        except posix_ipc.ExistentialError:
            pass
        sock = Path(self.runtime_dir, f"{stream}.sock")
        if sock.exists():
            sock.unlink()
            self.leftovers.append(f"socket {sock.name}")

    def close(self) -> None:
        self.broker.stop()
        for stream in self.streams:
            self.sweep(stream)
        shutil.rmtree(self.runtime_dir, ignore_errors=True)


def producer_floors(env: FramebusEnvironment, width: int, height: int,
                    seconds: float) -> dict[str, float]:
    """Frames/s of what bounds a framebus producer, measured here with nothing else running.

    A bare np.copyto of one frame into one buffer (cache-friendly), the same copy into
    SLOTS buffers in turn (the ring's memory footprint), and Publisher.publish with no
    subscriber: whatever publish loses to the second is the bus's own cost.
    """
    src = np.full((height, width, 3), 1, np.uint8)
    slots = [np.zeros_like(src) for _ in range(SLOTS)]  # zeros_like faults no pages in...
    for dst in slots:
        np.copyto(dst, src)  # ...so this does, before timing
    turn = itertools.count()
    floors = {"np.copyto": loop_rate(lambda: np.copyto(slots[0], src), seconds),
              f"np.copyto into {SLOTS} buffers in turn":
                  loop_rate(lambda: np.copyto(slots[next(turn) % SLOTS], src), seconds)}
    stream = env.stream_name("floor", f"{width}x{height}", 0)
    try:
        with framebus.Publisher(stream, shape=src.shape, fmt="bgr24", slots=SLOTS,
                                broker=env.address) as pub:
            pub.publish(src)
            floors["publish, no subscriber"] = loop_rate(lambda: pub.publish(src), seconds)
    finally:
        env.sweep(stream)
    return floors


# -- turning logs into figures ----------------------------------------------------------------


@dataclass
class Row:
    cell: Cell
    producer_fps: float = float("nan")
    fps: float = float("nan")  # delivered per subscriber, flat out
    paced: tuple[float, float] | None = None  # latency p50, p99 (ms)
    flat: tuple[float, float] | None = None
    drops: float = float("nan")  # per subscriber, flat out
    drop_share: float = float("nan")
    paced_drops: int = 0  # frames of the paced phase never delivered, all subscribers
    paced_with_copy: tuple[float, float] | None = None  # framebus: from before the copy
    notes: list[str] = field(default_factory=list)
    error: str | None = None

    @property
    def mbps(self) -> float:
        return self.fps * self.cell.frame_bytes / 1e6


def analyse(cell: Cell, phases: dict, reports: list[dict]) -> Row:
    paced, flat = phases["paced"], phases["flat"]
    flat_seconds = (flat["t1"] - flat["t0"]) / 1e9
    flat_count = flat["end"] - flat["first"]
    row = Row(cell, producer_fps=flat_count / flat_seconds)
    fps, drops, paced_ms, flat_ms, paced_copy_ms = [], [], [], [], []
    for report in reports:
        seq, t_write, t_start, t_recv = report["samples"].T
        in_paced = (seq >= paced["first"]) & (seq < paced["end"])
        in_flat = (seq >= flat["first"]) & (seq < flat["end"])
        # The rate counts what arrived within the phase; drops what never arrived at all.
        fps.append(np.count_nonzero(in_flat & (t_recv <= flat["t1"])) / flat_seconds)
        drops.append(flat_count - np.count_nonzero(in_flat))
        row.paced_drops += (paced["end"] - paced["first"]) - np.count_nonzero(in_paced)
        paced_ms.append((t_recv - t_write)[in_paced] / 1e6)
        flat_ms.append((t_recv - t_write)[in_flat] / 1e6)
        paced_copy_ms.append((t_recv - t_start)[in_paced] / 1e6)
    row.fps, row.drops = float(np.mean(fps)), float(np.mean(drops))
    row.drop_share = row.drops / flat_count if flat_count else 0.0
    row.paced, row.flat = percentiles(paced_ms), percentiles(flat_ms)
    if cell.system == "framebus":
        row.paced_with_copy = percentiles(paced_copy_ms)
        row.notes = _framebus_checks(reports)
    return row


def _framebus_checks(reports: list[dict]) -> list[str]:
    """What framebus subscribers say about themselves, against what they actually returned."""
    notes = []
    for i, report in enumerate(reports):
        seq = report["samples"][:, 0]
        if not seq.size:
            notes.append(f"subscriber {i} received nothing")
            continue
        gaps = int(seq.max() - seq.min() + 1 - seq.size)
        if np.any(np.diff(seq) <= 0):
            notes.append(f"subscriber {i} returned frames out of order or twice")
        if report["dropped"] != gaps:
            notes.append(f"subscriber {i}: sub.dropped = {report['dropped']} but {gaps} frames "
                         "were skipped between its first and last frame")
        if report["received"] != seq.size:
            notes.append(f"subscriber {i}: sub.received = {report['received']} but recv() "
                         f"returned {seq.size} frames")
        if report["rejected"]:
            notes.append(f"subscriber {i}: {report['rejected']} descriptors rejected")
    overwritten = sum(r["overwritten"] for r in reports)
    if overwritten:
        total = sum(len(r["samples"]) for r in reports)
        notes.append(f"{overwritten} of {total} frames returned by recv() had already been "
                     "overwritten in the ring when checked right after (frame.valid())")
    return notes


# -- output -----------------------------------------------------------------------------------

COLUMNS = ("size", "subs", "system", "producer fps", "fps/sub", "MB/s/sub",
           "latency ms paced p50/p99", "latency ms flat out p50/p99", "drops/sub flat out")


def _cells(row: Row) -> list[str]:
    c = row.cell
    head = [c.size, str(c.subs), c.system]
    if row.error:
        return head + ["failed"] + [""] * (len(COLUMNS) - 4)
    fps = f"{row.fps:,.0f}" if row.fps >= 100 else f"{row.fps:.1f}"
    return head + [f"{row.producer_fps:,.0f}", fps, f"{row.mbps:,.0f}",
                   format_pair(row.paced), format_pair(row.flat),
                   f"{row.drops:,.0f} ({row.drop_share:.0%})"]


CAPTION = (
    "Flat out, the producer publishes as fast as it can: PUB sockets silently drop what "
    f"exceeds their queue (zmq: {ZMQ_HWM} frames, imagezmq: 1000), framebus subscribers keep "
    "only the newest frame. fps/sub counts the frames received within the flat-out phase, "
    f"drops its frames still not received {GRACE:g} s after it. framebus moves no pixels: its "
    "MB/s is fps x frame size. Latency runs from the producer's clock at publish (framebus: "
    "at commit, after the copy into the slot) to the subscriber holding the array.")


def rich_table(rows: list[Row], seconds: float) -> Table:
    table = Table(title=f"framebus vs raw pyzmq vs imagezmq, bgr24, {seconds:g} s per phase",
                  header_style="bold")
    for name in COLUMNS:
        table.add_column(name, justify="left" if name in ("size", "system") else "right")
    previous = None
    for row in rows:
        if previous is not None and (row.cell.size, row.cell.subs) != previous:
            table.add_section()
        previous = (row.cell.size, row.cell.subs)
        style = "bold" if row.cell.system == "framebus" else None
        table.add_row(*_cells(row), style=style)
    table.caption = CAPTION
    return table


def markdown_table(rows: list[Row]) -> str:
    cells = [_cells(row) for row in rows]
    return common.markdown_table(COLUMNS, cells, ("size", "system")) + f"\n\n{CAPTION}"


@dataclass
class Target:
    what: str
    value: float | None  # None: not measured in this run
    goal: float
    at_most: bool = False  # the value must be <= goal instead of >= goal
    detail: str = ""

    @property
    def passed(self) -> bool:
        if self.value is None or np.isnan(self.value):
            return False
        return self.value <= self.goal if self.at_most else self.value >= self.goal


def targets(rows: list[Row]) -> list[Target]:
    by_key = {(r.cell.system, r.cell.size, r.cell.subs): r for r in rows if not r.error}

    def get(system: str, size: str, subs: int) -> Row | None:
        return by_key.get((system, size, subs))

    def ratio(a: float | None, b: float | None) -> float | None:
        return None if a is None or b is None or b == 0 else a / b

    def p50(row: Row | None) -> float | None:
        return row.paced[0] if row and row.paced else None

    def fps(row: Row | None) -> float | None:
        return row.fps if row else None

    sub_counts = sorted({r.cell.subs for r in rows})
    sizes = list(dict.fromkeys(r.cell.size for r in rows))
    hd, vga, uhd = "1920x1080", "640x480", "3840x2160"
    found: list[Target] = []
    for subs in sub_counts:
        fb, iz = get("framebus", hd, subs), get("imagezmq", hd, subs)
        found.append(Target(f"1080p, {subscribers(subs)}: paced p50 latency, imagezmq / framebus",
                            ratio(p50(iz), p50(fb)), 5.0, detail=_ms_pair(p50(iz), p50(fb))))
    for subs, goal in ((1, 3.0), (4, 10.0)):
        fb, iz = get("framebus", hd, subs), get("imagezmq", hd, subs)
        found.append(Target(f"1080p, {subscribers(subs)}: delivered fps/sub, framebus / imagezmq",
                            ratio(fps(fb), fps(iz)), goal, detail=_fps_pair(fps(fb), fps(iz))))
    for size in sizes:
        one, four = get("framebus", size, 1), get("framebus", size, 4)
        found.append(Target(f"{size}: framebus fps/sub, 4 subs / 1 sub",
                            ratio(fps(four), fps(one)), 0.9,
                            detail=_fps_pair(fps(four), fps(one))))
    for subs in sub_counts:
        big, small = get("framebus", uhd, subs), get("framebus", vga, subs)
        found.append(Target(f"framebus, {subscribers(subs)}: paced p50 latency, 4K / 640x480",
                            ratio(p50(big), p50(small)), 1.2, at_most=True,
                            detail=_ms_pair(p50(big), p50(small))))
    return found


def _ms_pair(a: float | None, b: float | None) -> str:
    return "" if a is None or b is None else f"{a:.2f} ms vs {b:.2f} ms"


def _fps_pair(a: float | None, b: float | None) -> str:
    return "" if a is None or b is None else f"{a:,.1f} vs {b:,.1f} fps"


def print_targets(console: Console, found: list[Target]) -> None:
    console.print("\n[bold]Targets[/] (ratios from this run)")
    for t in found:
        if t.value is None:
            console.print(f"  {verdict(None)} {t.what}: not measured in this run")
            continue
        sign = "<=" if t.at_most else ">="
        console.print(f"  {verdict(t.passed)} {t.what} = {t.value:.2f}x "
                      f"(target {sign} {t.goal:g}x; {t.detail})")


def print_producer_floors(console: Console, rows: list[Row],
                          floors: dict[str, dict[str, float]]) -> None:
    console.print("\n[bold]framebus producer against a bare copy[/] (frames/s, and % of a bare "
                  "np.copyto of one frame in a loop; all but the flat-out figures measured with "
                  "nothing else running)")
    for size, rates in floors.items():
        copy = rates["np.copyto"]
        frame = next(r.cell.frame_bytes for r in rows if r.cell.size == size)
        parts = [f"np.copyto {copy:,.0f} ({copy * frame / 1e9:.1f} GB/s)"]
        parts += [f"{what} {rate:,.0f} ({rate / copy:.0%})" for what, rate in rates.items()
                  if what != "np.copyto"]
        parts += [f"publish flat out with {subscribers(r.cell.subs)} "
                  f"{r.producer_fps:,.0f} ({r.producer_fps / copy:.0%})" for r in rows
                  if r.cell.system == "framebus" and r.cell.size == size and not r.error]
        console.print(f"  {size}: " + "; ".join(parts), highlight=False)


def print_notes(console: Console, rows: list[Row], leftovers: list[str]) -> None:
    lines = []
    for row in rows:
        if row.error:
            lines.append(f"{row.cell}: [red]failed[/]: {row.error.strip().splitlines()[-1]}")
            continue
        if row.paced_with_copy:
            lines.append(f"{row.cell}: paced latency from before the copy into the slot "
                         f"p50/p99 {format_pair(row.paced_with_copy)} ms")
        if row.paced_drops:
            lines.append(f"{row.cell}: {row.paced_drops} frames of the 30 fps phase never "
                         "delivered (all subscribers)")
        lines += [f"{row.cell}: {note}" for note in row.notes]
    lines += [f"left behind by a producer (removed now): {item}" for item in leftovers]
    print_section(console, "Notes", lines)


# -- command line -----------------------------------------------------------------------------


def _subs(ctx, param, value: str) -> list[int]:
    try:
        counts = [int(n) for n in value.split(",")]
        if all(n > 0 for n in counts):
            return counts
    except ValueError:
        pass
    raise click.BadParameter(f"expected positive counts such as 1,4, got {value!r}")


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--seconds", type=click.FloatRange(min=0.5), default=3.0, show_default=True,
              help="Length of each phase (paced, then flat out) of every cell.")
@click.option("--sizes", default=DEFAULT_SIZES, show_default=True, callback=parse_sizes,
              help="Frame sizes, WIDTHxHEIGHT, comma-separated.")
@click.option("--subs", default="1,4", show_default=True, callback=_subs,
              help="Subscriber counts, comma-separated.")
@click.option("--systems", default=",".join(SYSTEMS), show_default=True,
              callback=parse_systems(SYSTEMS),
              help="Systems to compare, comma-separated.")
@click.option("--markdown", is_flag=True, help="Also print the table as Markdown.")
def main(seconds: float, sizes: list[tuple[int, int]], subs: list[int], systems: list[str],
         markdown: bool) -> None:
    """Frames from one producer to N local subscribers: framebus, raw pyzmq, imagezmq."""
    # SIGTERM unwinds like Ctrl-C, so the cleanup below runs.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    env = FramebusEnvironment()
    try:
        floors = {}
        if "framebus" in systems:
            env.start_broker()
            err.print("measuring the producer's floors (np.copyto, publish) ...", highlight=False)
            floors = {f"{w}x{h}": producer_floors(env, w, h, max(0.3, seconds / 6))
                      for w, h in sizes}
        rows = run_all(env, seconds, sizes, subs, systems)
    except KeyboardInterrupt:
        err.print("\n[red]interrupted[/]: children stopped, rings and sockets removed")
        sys.exit(130)
    finally:
        env.close()
    # A pipe gets the table at full width too, not squeezed into 80 columns.
    out = Console(width=None if sys.stdout.isatty() else 170)
    out.print(rich_table(rows, seconds))
    if markdown:
        out.print()
        out.print(markdown_table(rows), markup=False, highlight=False, soft_wrap=True)
    print_targets(out, targets(rows))
    if floors:
        print_producer_floors(out, rows, floors)
    print_notes(out, rows, env.leftovers)


def run_all(env: FramebusEnvironment, seconds: float, sizes: list[tuple[int, int]],
            subs: list[int], systems: list[str]) -> list[Row]:
    """Every cell, one after the other, with progress on stderr."""
    mp = get_context("spawn")
    plan = [(w, h, n, system) for w, h in sizes for n in subs for system in systems]
    rows = []
    started = time.monotonic()
    for i, (w, h, n, system) in enumerate(plan, 1):
        cell = Cell(system, w, h, n, seconds, env.stream_name(system, f"{w}x{h}", n),
                    env.address)
        err.print(f"[{i:2}/{len(plan)}] {cell} ...", end="", highlight=False)
        t0 = time.monotonic()
        try:
            row = analyse(cell, *run_cell(cell, mp))
            err.print(f" {row.fps:,.1f} fps/sub ({time.monotonic() - t0:.1f} s)", highlight=False)
        except RuntimeError as exc:
            row = Row(cell, error=str(exc))
            err.print(f" [red]failed[/]\n{exc}", highlight=False)
        finally:
            if system == "framebus":
                env.sweep(cell.stream)
        rows.append(row)
    err.print(f"all {len(plan)} cells in {time.monotonic() - started:.0f} s", highlight=False)
    return rows


if __name__ == "__main__":
    main()
