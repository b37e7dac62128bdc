"""Running the bus benchmark's cells from the main process, and the framebus pieces it owns:
the broker, a private namespace, the cleanup; the producer's floors."""

from __future__ import annotations

import itertools
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import posix_ipc

import framebus
from bench.bus.cell import GRACE, PHASE_GAP, SHM_PREFIX, STARTUP_TIMEOUT, Cell
from bench.bus.children import child_entry, consumer_process, producer_process
from bench.common import (
    SLOTS,
    STOP_TIMEOUT,
    ThreadBroker,
    collect,
    free_port,
    loop_rate,
    start_process,
)
from framebus import config
from framebus.support.children import stop_all

# -- running a cell from the main process -----------------------------------------------------


def run_cell(cell: Cell, mp) -> tuple[dict, list[dict]]:
    """Run one cell; returns the producer's phases and each subscriber's report."""
    queue, go, stop = mp.Queue(), mp.Event(), mp.Event()
    # A bound on every child's life, should this process die without stopping them.
    deadline = time.time() + 2 * STARTUP_TIMEOUT + 2 * cell.seconds + PHASE_GAP + 30
    procs: list = []
    try:
        procs.append(_start(mp, producer_process, queue, "producer", cell, go, stop, deadline))
        address = collect(queue, "up", 1, procs, STARTUP_TIMEOUT)["producer"]
        for i in range(cell.subs):
            procs.append(_start(mp, consumer_process, queue, i, cell, i, address, stop, deadline))
        collect(queue, "ready", cell.subs, procs, STARTUP_TIMEOUT)
        go.set()
        phases = collect(queue, "done", 1, procs, 2 * cell.seconds + 30)["producer"]
        time.sleep(GRACE)
        stop.set()
        reports = collect(queue, "result", cell.subs, procs, STARTUP_TIMEOUT)
        return phases, [reports[i] for i in range(cell.subs)]
    finally:
        stop.set()
        stop_all(procs, STOP_TIMEOUT, patience=5.0)
        queue.close()


def _start(mp, target: Callable, queue, role, *args):
    return start_process(mp, child_entry, target, queue, role, *args)


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
