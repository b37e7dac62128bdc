"""The bus benchmark's child processes (multiprocessing, spawn): the producer and the
subscribers of one cell."""

from __future__ import annotations

import signal
import sys
import time
import traceback
from collections.abc import Callable

import numpy as np

from bench.bus.cell import PACED_FPS, PHASE_GAP, RECV_TIMEOUT, Cell
from bench.bus.systems import RECEIVERS, SENDERS
from bench.common import Aborted, publish_for, warm_up
from framebus.testsrc import TestPattern

# -- the child processes ----------------------------------------------------------------------
#
# They talk to the main process through one queue of (kind, role, payload) messages, with
# plain payloads only.


def child_entry(target: Callable, queue, role, *args) -> None:
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
        samples: list[tuple[int, ...]] = []
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
            # The consumer's own CPU time so far: its CPU per frame, whatever the system.
            samples.append((*sample, time.process_time_ns()))
        log = np.array(samples, np.int64).reshape(-1, 5)
        queue.put(("result", index, {"samples": log, **receiver.stats()}))
    finally:
        receiver.close()
