"""The decode benchmark's child processes (multiprocessing, spawn), and the CPU accounting
they and the main process share. Light on imports: every spawned child imports this."""

from __future__ import annotations

import math
import os
import signal
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import framebus
from bench.common import CLOCK_TICK, cpu_seconds
from bench.decode.settings import MEASURED_PASSES, RECV_TIMEOUT, TICK

# -- CPU accounting --------------------------------------------------------------------------------
#
# Two cores are shared with other people's work: every measurement says how much CPU the
# machine spent on things that were not this benchmark ("others", in cores).


def machine_busy() -> float:
    """CPU seconds all cores have been busy since boot (/proc/stat)."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    return (sum(values) - values[3] - values[4]) / CLOCK_TICK  # minus idle and iowait


def process_cpu(pid: int) -> float:
    """CPU seconds, user + system, all threads, of process *pid*; 0 once it is gone."""
    seconds = cpu_seconds(pid)
    return 0.0 if seconds is None else seconds


@dataclass
class Usage:
    """At one moment: wall clock, machine-wide busy CPU, CPU of the decoding process and of
    any other benchmark process taking part (a subscriber)."""

    wall: float
    busy: float
    decoder: float
    helper: float

    @classmethod
    def now(cls, decoder_pid: int | None = None) -> Usage:
        """*decoder_pid* None: the decoding process is this one, with no helper."""
        if decoder_pid is None:
            return cls(time.perf_counter(), machine_busy(), time.process_time(), 0.0)
        return cls(time.perf_counter(), machine_busy(), process_cpu(decoder_pid),
                   time.process_time())


def usage_between(start: Usage, end: Usage, frames: int) -> dict:
    wall = end.wall - start.wall
    decoder, helper = end.decoder - start.decoder, end.helper - start.helper
    others = (end.busy - start.busy) - decoder - helper
    return {"frames": frames, "seconds": wall, "cpu_ms": 1000 * decoder / max(1, frames),
            "helper_ms": 1000 * helper / max(1, frames),
            "others": max(0.0, others) / wall if wall > 0 else float("nan")}


# -- child processes (multiprocessing, spawn) ----------------------------------------------------
#
# They report through one queue of (kind, role, payload) messages with plain payloads.
# Capacity subscribers stop when told, at their deadline, or when the main process is gone.


def child_entry(target: Callable, queue, role, *args) -> None:
    """Entry point of every child: SIGTERM unwinds like Ctrl-C, so `finally` blocks run."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        target(queue, role, *args)
    except (KeyboardInterrupt, SystemExit):
        pass
    except BaseException:
        queue.put(("error", role, traceback.format_exc()))


class _StopCheck:
    """Whether a child should stop: told to, past its deadline, or orphaned. Looking at the
    Event takes a lock, so it is looked at 50 times a second, not once a frame."""

    def __init__(self, stop, deadline: float, parent: int) -> None:
        self.stop, self.deadline, self.parent = stop, deadline, parent
        self.next = 0.0

    def __call__(self) -> bool:
        now = time.monotonic()
        if now < self.next:
            return False
        self.next = now + 0.02
        return self.stop.is_set() or time.time() > self.deadline or os.getppid() != self.parent


def _touch(image: np.ndarray) -> int:
    """Read one pixel, so the subscriber really maps the slot: the benchmark's "work"."""
    return int(image[image.shape[0] // 2, image.shape[1] // 2].ravel()[0])


def pyav_process(queue, role, path: str, convert: bool) -> None:
    import av

    with av.open(path) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"  # FFmpeg's frame and slice threads, as framebus decode uses
        frames, start = 0, Usage.now()
        for frame in container.decode(stream):
            if convert:
                image = frame.to_ndarray(format="bgr24")  # a new swscale context every call
                _touch(image)
            frames += 1
        queue.put(("result", role, usage_between(start, Usage.now(), frames)))


def opencv_process(queue, role, path: str) -> None:
    import cv2

    capture = cv2.VideoCapture(path, cv2.CAP_FFMPEG)
    if not capture.isOpened():
        raise RuntimeError(f"OpenCV cannot open {path}")
    try:
        frames, start = 0, Usage.now()
        while True:
            ok, image = capture.read()
            if not ok:
                break
            _touch(image)
            frames += 1
        queue.put(("result", role, usage_between(start, Usage.now(), frames)))
    finally:
        capture.release()


def counting_subscriber(queue, role, name: str, frames_per_pass: int, stop, deadline: float,
                        parent: int) -> None:
    """Mode "all": time MEASURED_PASSES whole passes of a looping `framebus decode --fast`.

    The window starts at the first pass that begins after the subscriber joined, and ends
    at the first frame of the pass MEASURED_PASSES later; every frame of it must arrive.
    """
    should_stop = _StopCheck(stop, deadline, parent)
    with framebus.Subscriber(name, mode="all") as sub:
        queue.put(("ready", role, None))
        window = start = None
        received = skipped = 0
        while not should_stop():
            try:
                frame = sub.recv(timeout=RECV_TIMEOUT)
            except framebus.Timeout:
                continue
            _touch(frame.array)
            if window is None:  # the first frame: it says when the subscriber joined
                first = frames_per_pass * max(1, math.ceil(frame.seq / frames_per_pass))
                window = {"joined": frame.seq, "first": first,
                          "end": first + MEASURED_PASSES * frames_per_pass}
            if frame.seq < window["first"]:
                continue
            if start is None:  # the pass starts: the clock and the decoder's CPU with it
                start = Usage.now(sub.info.pid)
                window["first_seen"] = frame.seq
                window["boundary_time"] = frame.time  # must be a multiple of the file's length
                received = 1
                continue
            if frame.seq >= window["end"]:
                # Frames skipped just before this one, as far as they lie in the window.
                skipped += max(0, frame.skipped - (frame.seq - window["end"]))
                published = frame.seq - window["first_seen"]
                queue.put(("result", role, {**window, "received": received, "skipped": skipped,
                                            **usage_between(start, Usage.now(sub.info.pid),
                                                            published)}))
                return
            received += 1
            skipped += frame.skipped


def latest_subscriber(queue, role, name: str, stop, deadline: float, parent: int) -> None:
    """Mode "latest": log (seq, timestamp_ns, arrival) and the media time of every frame.

    A frame's age when read is arrival - timestamp_ns: what ``frame.age`` computes, with
    the clock read once for both. framebus decode stamps a frame just before converting it
    into its slot, so the age includes the conversion.
    """
    should_stop = _StopCheck(stop, deadline, parent)
    log: list[tuple[int, int, int]] = []
    media: list[float] = []
    overwritten = 0
    tick_at, tick_count, tick_age = time.monotonic() + TICK, 0, 0
    with framebus.Subscriber(name) as sub:
        while not should_stop():
            try:
                frame = sub.recv(timeout=RECV_TIMEOUT)
            except framebus.Timeout:
                frame = None
            if frame is not None:
                _touch(frame.array)
                now = time.time_ns()
                if not frame.valid():
                    overwritten += 1
                log.append((frame.seq, frame.timestamp_ns, now))
                media.append(math.nan if frame.time is None else frame.time)
                if len(log) == 1:
                    queue.put(("ready", role, None))
                tick_count += 1
                tick_age = max(tick_age, now - frame.timestamp_ns)
            if time.monotonic() >= tick_at:  # live figures for the main process
                queue.put(("tick", role, (tick_count / TICK, tick_age / 1e6)))
                tick_at, tick_count, tick_age = tick_at + TICK, 0, 0
        queue.put(("result", role, {"log": np.array(log, np.int64).reshape(-1, 3),
                                    "media": np.array(media, np.float64),
                                    "dropped": sub.dropped, "rejected": sub.rejected,
                                    "overwritten": overwritten}))
