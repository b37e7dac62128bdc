"""The remote benchmark's child processes (multiprocessing, spawn): the producer and the
consumers of one cell."""

from __future__ import annotations

import signal
import sys
import time
import traceback
from collections.abc import Callable

import numpy as np

from bench.common import Aborted, Sender, publish_for, warm_up
from bench.remote.cell import PHASE_GAP, RECV_TIMEOUT, SLOW_PERIOD, TAIL_FPS, WARMUP_FPS, Cell
from bench.remote.systems import make_receiver, make_sender
from framebus.support.children import die_with_parent
from framebus.testsrc import TestPattern

# -- the child processes ----------------------------------------------------------------------
#
# They talk to the main process through one queue of (kind, role, payload) messages with plain
# payloads.


def exit_on_sigterm(code: int) -> None:
    """SIGTERM unwinds like Ctrl-C, so `finally` blocks run; only the first one does: a
    second SIGTERM (a child can get two when the main process dies) must not cut them short."""

    def handler(*_) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        sys.exit(code)

    signal.signal(signal.SIGTERM, handler)


def child_entry(target: Callable, queue, role, *args) -> None:
    """Entry point of every child: SIGTERM unwinds like Ctrl-C; dies with the main process."""
    exit_on_sigterm(0)
    die_with_parent()  # PR_SET_PDEATHSIG: even a SIGKILLed main leaves no child behind
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
        flat = publish_for(sender, image, paced["end"], cell.seconds, cell.flat_fps)
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
