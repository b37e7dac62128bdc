#!/usr/bin/env python
"""Benchmark: decoding 1080p H.264, plain PyAV and OpenCV against `framebus decode`.

The script first encodes its own test video (1080p H.264, libx264 yuv420p, 25 fps, a moving
busy picture with film grain, so decoding is real work) into a temporary directory. Then:

  throughput  frames/s decoding the file as fast as possible, every system in a process of
              its own, --runs times, the systems interleaved so that other work on the
              machine spoils them alike:
                PyAV, decode only (threads AUTO): the reference of what decoding costs;
                PyAV, decode + frame.to_ndarray(format="bgr24"), the way people write it;
                cv2.VideoCapture(file).read() in a loop;
                `framebus decode FILE --fast` (the real command, a subprocess) into the bus,
                counted by one subscriber process in mode "all", per --formats.
  capacity    the number of 25 fps 1080p streams played in real time by
              `framebus decode FILE --loop --threads 1`, two subscriber processes each
              (mode "latest"), that this machine sustains: every subscriber >= 24 fps and no
              frame older than 100 ms when read. N = 2, 3, ... until a level fails.

framebus gets a private broker on a free loopback port, a shared-memory prefix and a socket
directory of its own, so that the cleanup (children, rings, sockets, the video) is exact,
on Ctrl-C and on failure too.

Why framebus is timed over passes of a looping file: a subscriber started before its producer
finds it through the broker, which it asks every 0.5 s, and ZeroMQ drops descriptors sent
before the subscription arrives. On a file that decodes in about a second, that is a good
part of the file gone before the subscriber joins (measured: 5 to 100 of 200 frames). So the
decoder runs with --fast --loop, and the subscriber times whole passes after the one in which
it joined: from the first frame of a pass to the first frame of the pass MEASURED_PASSES
later, checking that it received every frame in between.

From the repository root:

    .venv/bin/python bench/decode.py [--seconds 8] [--video-seconds 10] [--runs 3]
                                     [--max-streams 10] [--formats bgr24,yuv420p]
                                     [--skip-capacity] [--no-threads0] [--markdown]
"""

from __future__ import annotations

import math
import os
import queue as queue_module
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from statistics import median

import click
import numpy as np
from common import (
    CLOCK_TICK,
    ThreadBroker,
    cpu_seconds,
    free_port,
    markdown_table,
    print_section,
    sweep_rings,
    verdict,
)
from rich.console import Console
from rich.live import Live
from rich.table import Table
from rich.text import Text

import framebus
from framebus.supervisor import PARENT_ENV

WIDTH, HEIGHT, FPS = 1920, 1080, 25
PRESET, CRF = "veryfast", 23
FORMATS = ("bgr24", "yuv420p")
#: Whole passes over the looping file that a framebus throughput run times.
MEASURED_PASSES = 2
#: Ring depth of the throughput runs: a mode-"all" subscriber must never be lapped.
THROUGHPUT_SLOTS = 32
SUBS_PER_STREAM = 2
#: Capacity criteria: every subscriber gets >= 96% of the stream's rate, and no frame is
#: older than this when read.
MIN_FPS = 0.96 * FPS
MAX_AGE_MS = 100.0
CAPACITY_GOAL = 6
#: After every subscriber of a capacity level has its first frame: let the start-up burst
#: (3N Python processes importing numpy, PyAV, ZeroMQ on two cores) settle before measuring.
WARM_UP = 2.0
STARTUP_TIMEOUT = 60.0
RECV_TIMEOUT = 0.05
#: How often capacity subscribers send their live figures to the main process.
TICK = 1.0

# Progress lines unwrapped, so a log of them stays one line per event.
err = Console(stderr=True, soft_wrap=True)


# -- the test video ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Video:
    path: Path
    frames: int
    bytes: int

    @property
    def duration(self) -> float:
        return self.frames / FPS

    @property
    def mbps(self) -> float:
        return self.bytes * 8 / self.duration / 1e6

    def describe(self) -> str:
        return (f"{WIDTH}x{HEIGHT} H.264 (libx264 {PRESET}, crf {CRF}, yuv420p), {FPS} fps, "
                f"{self.frames} frames = {self.duration:g} s, {self.mbps:.1f} Mbit/s")


def encode_video(path: Path, seconds: float) -> Video:
    """Encode the test video: gradients, diagonal bands, moving shapes and grain on top.

    The grain changes every frame, as a camera sensor's does, so the file costs bits and
    decoding is real work (the same picture as the earlier conversion measurements).
    """
    import av

    frames = max(2 * FPS, round(seconds * FPS))
    picture = _Picture()
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        stream.options = {"preset": PRESET, "crf": str(CRF)}
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(picture.draw(i), format="bgr24")
            for packet in stream.encode(frame):
                out.mux(packet)
            if i % FPS == 0:
                err.print(f"  encoding the test video: frame {i}/{frames}", highlight=False)
        for packet in stream.encode():
            out.mux(packet)
    return Video(path, frames, path.stat().st_size)


class _Picture:
    """The frames of the test video, drawn with numpy and OpenCV."""

    def __init__(self) -> None:
        x = np.arange(WIDTH, dtype=np.float32)
        y = np.arange(HEIGHT, dtype=np.float32)
        self.x, self.y = x, y
        self.diagonal = ((x[None, :] + y[:, None]) % 256).astype(np.uint8)
        rng = np.random.default_rng(1)
        self.grain = rng.integers(0, 10, size=(HEIGHT + 64, WIDTH + 64, 3), dtype=np.uint8)
        self.image = np.empty((HEIGHT, WIDTH, 3), np.uint8)

    def draw(self, i: int) -> np.ndarray:
        import cv2

        t, img = i / FPS, self.image
        # Blue varies along x, green along y: broadcast rows and columns, not full planes.
        img[..., 0] = (127 + 127 * np.sin(self.x / WIDTH * 6.28 + t)).astype(np.uint8)
        img[..., 1] = (127 + 127 * np.sin(self.y / HEIGHT * 6.28 - 1.3 * t)).astype(
            np.uint8)[:, None]
        np.add(self.diagonal, np.uint8(40 * i % 256), out=img[..., 2])  # wraps: moving bands
        ox, oy = (7 * i) % 64, (3 * i) % 64
        cv2.add(img, self.grain[oy:oy + HEIGHT, ox:ox + WIDTH], dst=img)
        for k in range(12):
            cx = int((0.5 + 0.45 * math.sin(t * (0.7 + 0.13 * k) + k)) * WIDTH)
            cy = int((0.5 + 0.45 * math.cos(t * (0.5 + 0.17 * k) + 2 * k)) * HEIGHT)
            colour = (40 * k % 256, (255 - 20 * k) % 256, (90 + 30 * k) % 256)
            if k % 2:
                cv2.circle(img, (cx, cy), HEIGHT // 10 + 5 * k, colour, -1)
            else:
                cv2.rectangle(img, (cx - WIDTH // 16, cy - HEIGHT // 14),
                              (cx + WIDTH // 16, cy + HEIGHT // 14), colour, -1)
        cv2.putText(img, f"frame {i}", (50, HEIGHT // 2), cv2.FONT_HERSHEY_SIMPLEX,
                    HEIGHT / 300, (255, 255, 255), 4)
        return img


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


def _child(target: Callable, queue, role, *args) -> None:
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


# -- what the main process owns: temp dir, broker, decoders, cleanup -------------------------------


@dataclass
class Decoder:
    """One `framebus decode` subprocess and its log."""

    name: str
    argv: list[str]
    proc: subprocess.Popen
    log: Path

    def tail(self, lines: int = 5) -> str:
        try:
            text = self.log.read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return "\n".join(text[-lines:])


class Bench:
    """A temp dir (video, decoder logs, descriptor sockets), a broker on a free loopback port
    and a shared-memory prefix of this run's own, so the cleanup touches nothing else."""

    def __init__(self) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="fbdecode-"))
        self.logs = self.tmp / "logs"
        self.logs.mkdir()
        runtime = self.tmp / "run"
        runtime.mkdir(mode=0o700)
        self.prefix = f"fbdecode{os.getpid()}"
        self.address = f"tcp://127.0.0.1:{free_port()}"
        # Children, spawned and subprocess alike, inherit these.
        os.environ.update(FRAMEBUS_BROKER=self.address, FRAMEBUS_SHM_PREFIX=self.prefix,
                          FRAMEBUS_RUNTIME_DIR=str(runtime))
        self.decoders: list[Decoder] = []
        self.leftovers: list[str] = []  # rings a stopped decoder left behind
        self.broker = ThreadBroker(self.address)

    def start_broker(self) -> None:
        self.broker.start()

    def start_decoder(self, video: Video, name: str, *options: str) -> Decoder:
        argv = [sys.executable, "-m", "framebus", "decode", str(video.path), "--name", name,
                *options]
        log = self.logs / f"{name}.log"
        # A session of its own: a Ctrl-C at the terminal reaches this process only, which
        # stops the decoders in order. PARENT_ENV makes `framebus decode` ask the kernel for
        # SIGTERM should this process die without stopping it (as under `framebus up`).
        with open(log, "wb") as out:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=subprocess.STDOUT, start_new_session=True,
                                    env={**os.environ, PARENT_ENV: str(os.getpid())})
        decoder = Decoder(name, argv, proc, log)
        self.decoders.append(decoder)
        return decoder

    def stop_decoders(self, decoders: list[Decoder], patience: float = 5.0) -> None:
        """SIGTERM all at once (they unlink their rings on the way out), then wait; kill
        what does not stop in time."""
        for d in decoders:
            if d.proc.poll() is None:
                d.proc.terminate()
        end = time.monotonic() + patience
        for d in decoders:
            try:
                d.proc.wait(max(0.1, end - time.monotonic()))
            except subprocess.TimeoutExpired:
                d.proc.kill()
                d.proc.wait()

    def sweep(self) -> None:
        """Unlink any ring of this run still in /dev/shm, and note it (a framebus bug when
        its decoder stopped cleanly)."""
        self.leftovers += sweep_rings(self.prefix)

    def close(self) -> None:
        self.stop_decoders(self.decoders)
        self.broker.stop()
        self.sweep()
        shutil.rmtree(self.tmp, ignore_errors=True)


class Crew:
    """The processes of one measurement: spawned children and decoder subprocesses, stopped
    and swept when the measurement ends, however it ends."""

    def __init__(self, bench: Bench, mp, lifetime: float) -> None:
        self.bench, self.mp = bench, mp
        self.queue, self.stop = mp.Queue(), mp.Event()
        # A bound on every child's life, should this process die without stopping them.
        self.deadline = time.time() + lifetime
        self.children: list = []
        self.decoders: list[Decoder] = []

    def spawn(self, target: Callable, role, *args) -> None:
        proc = self.mp.Process(target=_child, args=(target, self.queue, role, *args),
                               name=f"bench-{role}")
        proc.start()
        self.children.append(proc)

    def decode(self, video: Video, name: str, *options: str) -> Decoder:
        decoder = self.bench.start_decoder(video, name, *options)
        self.decoders.append(decoder)
        return decoder

    def pids(self) -> tuple[list[int], list[int]]:
        return [d.proc.pid for d in self.decoders], [c.pid for c in self.children]

    def check(self) -> None:
        """Raise if a child crashed or a decoder stopped: they all run until told to stop."""
        crashed = [c.name for c in self.children if c.exitcode not in (None, 0)]
        if crashed:
            raise RuntimeError(f"{', '.join(crashed)} died")
        for d in self.decoders:
            if d.proc.poll() is not None:
                raise RuntimeError(f"`framebus decode` of {d.name} exited with status "
                                   f"{d.proc.returncode}:\n{d.tail()}")

    def collect(self, kind: str, count: int, timeout: float,
                on_tick: Callable | None = None) -> dict:
        """Wait for *count* messages of *kind*, by role, passing live figures to *on_tick*."""
        got: dict = {}
        end = time.monotonic() + timeout
        while len(got) < count:
            msg = self._next(end, on_tick)
            if msg is None:
                raise RuntimeError(f"timed out waiting for '{kind}' ({len(got)} of {count})")
            if msg[0] == kind:
                got[msg[1]] = msg[2]
        return got

    def wait(self, seconds: float, on_tick: Callable | None = None) -> None:
        """Let *seconds* pass, taking live figures and noticing failures meanwhile."""
        end = time.monotonic() + seconds
        while self._next(end, on_tick) is not None:
            pass

    def _next(self, end: float, on_tick: Callable | None) -> tuple | None:
        """The next message other than a tick, or None at *end*; raises on a failure."""
        while True:
            remaining = end - time.monotonic()
            if remaining <= 0:
                return None
            try:
                kind, role, payload = self.queue.get(timeout=min(0.2, remaining))
            except queue_module.Empty:
                self.check()
                if on_tick is not None:
                    on_tick(None, None)
                continue
            if kind == "error":
                raise RuntimeError(f"{role} failed:\n{payload}")
            if kind == "tick":
                if on_tick is not None:
                    on_tick(role, payload)
                continue
            return kind, role, payload

    def close(self) -> None:
        self.stop.set()
        self.bench.stop_decoders(self.decoders)
        end = time.monotonic() + 5.0
        for child in self.children:
            child.join(max(0.0, end - time.monotonic()))
        for child in self.children:
            if child.is_alive():
                child.terminate()
                child.join(2.0)
            if child.is_alive():
                child.kill()
                child.join()
        self.queue.close()
        self.bench.sweep()

    def __enter__(self) -> Crew:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class Ticker:
    """Live figures on stderr: redrawn in place on a terminal, a line every few seconds
    in a log."""

    def __init__(self, every: float = 2.0) -> None:
        self.live = Live(console=err, transient=True, refresh_per_second=4) \
            if err.is_terminal else None
        self.every, self.next = every, time.monotonic() + every

    def update(self, text: str) -> None:
        if self.live is not None:
            self.live.update(Text(text))
        elif time.monotonic() >= self.next:
            self.next = time.monotonic() + self.every
            err.print(f"    {text}", highlight=False)

    def __enter__(self) -> Ticker:
        if self.live is not None:
            self.live.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        if self.live is not None:
            self.live.__exit__(*exc)


# -- throughput ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class System:
    key: str
    label: str
    how: str


def throughput_systems(formats: list[str]) -> list[System]:
    systems = [
        System("pyav-decode", "PyAV, decode only", "container.decode(), threads AUTO, no "
               "conversion (reference)"),
        System("pyav-bgr24", "PyAV + to_ndarray", 'decode, threads AUTO, then '
               'frame.to_ndarray(format="bgr24")'),
        System("opencv", "OpenCV", "cv2.VideoCapture(file).read()"),
    ]
    systems += [System(f"framebus-{fmt}", f"framebus {fmt}",
                       f"framebus decode --fast --format {fmt} --slots {THROUGHPUT_SLOTS} "
                       "→ 1 subscriber, mode all") for fmt in formats]
    return systems


def measure_once(bench: Bench, mp, video: Video, system: System, index: int) -> dict:
    """One run of one system, in processes of its own."""
    with Crew(bench, mp, lifetime=STARTUP_TIMEOUT + 120) as crew:
        if not system.key.startswith("framebus-"):
            target, args = (opencv_process, ()) if system.key == "opencv" else \
                (pyav_process, (system.key == "pyav-bgr24",))
            crew.spawn(target, system.key, str(video.path), *args)
            return crew.collect("result", 1, STARTUP_TIMEOUT + 120)[system.key]
        fmt = system.key.split("-", 1)[1]
        name = f"tp-{fmt}-{index}"
        # The subscriber first: it waits for its producer.
        crew.spawn(counting_subscriber, "subscriber", name, video.frames, crew.stop,
                   crew.deadline, os.getpid())
        crew.collect("ready", 1, STARTUP_TIMEOUT)
        crew.decode(video, name, "--format", fmt, "--fast", "--loop",
                    "--slots", str(THROUGHPUT_SLOTS))
        # Even at 20 fps, the passes before the window and the window fit in this.
        timeout = STARTUP_TIMEOUT + (MEASURED_PASSES + 2) * video.frames / 20
        result = crew.collect("result", 1, timeout)["subscriber"]
        return {**result, "fps_delivered": result["received"] / result["seconds"]}


@dataclass
class ThroughputRow:
    system: System
    runs: list[dict] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def fps(self) -> list[float]:
        return [r["frames"] / r["seconds"] for r in self.runs]

    @property
    def median(self) -> float | None:
        return median(self.fps) if self.runs else None


def run_throughput(bench: Bench, mp, video: Video, systems: list[System],
                   runs: int) -> list[ThroughputRow]:
    """Every system --runs times, interleaved, so that a burst of other work spoils one
    run of each rather than every run of one."""
    rows = {s.key: ThroughputRow(s) for s in systems}
    total, done, started = runs * len(systems), 0, time.monotonic()
    for index in range(runs):
        for system in systems:
            done += 1
            err.print(f"  [{done:2}/{total}] {system.label}, run {index + 1} ...", end="",
                      highlight=False)
            try:
                result = measure_once(bench, mp, video, system, index)
            except RuntimeError as exc:
                rows[system.key].errors.append(str(exc))
                err.print(f" [red]failed[/]\n{exc}", highlight=False)
                continue
            rows[system.key].runs.append(result)
            err.print(f" {result['frames'] / result['seconds']:.1f} fps, CPU "
                      f"{result['cpu_ms']:.2f} ms/frame, others {result['others']:.2f} cores, "
                      f"load {os.getloadavg()[0]:.2f}{_joined(result)}", highlight=False)
    err.print(f"  throughput done in {time.monotonic() - started:.0f} s", highlight=False)
    return list(rows.values())


def _joined(result: dict) -> str:
    if "joined" not in result:
        return ""
    return (f" (subscriber: joined at frame {result['joined']}, timed frames "
            f"{result['first_seen']}..{result['end']}, {result['helper_ms']:.2f} ms CPU/frame)")


# -- capacity --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Level:
    fmt: str
    threads: int
    streams: int
    seconds: float

    def __str__(self) -> str:
        return f"{self.streams} streams {self.fmt} --threads {self.threads}"


@dataclass
class LevelResult:
    level: Level
    fps: list[float] = field(default_factory=list)  # per subscriber
    ages: np.ndarray = field(default_factory=lambda: np.empty(0))  # ms, all subscribers
    lags: np.ndarray = field(default_factory=lambda: np.empty(0))  # ms
    drops: int = 0
    overwritten: int = 0
    rejected: int = 0
    decoder_ms: float = float("nan")  # decoder CPU per published frame
    cores: dict = field(default_factory=dict)  # decoders, subscribers, others
    load: float = float("nan")
    error: str | None = None

    @property
    def passed(self) -> bool:
        return (self.error is None and bool(self.fps) and min(self.fps) >= MIN_FPS
                and self.ages.size > 0 and float(self.ages.max()) <= MAX_AGE_MS)

    @property
    def over(self) -> int:
        return int(np.count_nonzero(self.ages > MAX_AGE_MS))


def run_capacity(bench: Bench, mp, video: Video, fmt: str, threads: int, max_streams: int,
                 seconds: float, start: int = 2) -> list[LevelResult]:
    """N = start, start+1, ... up to the first level that fails, or max_streams."""
    results = []
    for n in range(start, max_streams + 1):
        result = run_level(bench, mp, video, Level(fmt, threads, n, seconds))
        results.append(result)
        if not result.passed:
            break
    return results


def run_level(bench: Bench, mp, video: Video, level: Level) -> LevelResult:
    n, started = level.streams, time.monotonic()
    err.print(f"  {level} + {SUBS_PER_STREAM * n} subscribers ...", highlight=False)
    names = [f"cap-{level.fmt}-t{level.threads}-n{n}-{i}" for i in range(n)]
    live = _LiveLevel(level)
    try:
        with Crew(bench, mp, lifetime=2 * STARTUP_TIMEOUT + WARM_UP + level.seconds) as crew, \
                Ticker() as ticker:
            live.ticker = ticker
            for name in names:  # subscribers first: they wait for their producers
                for k in range(SUBS_PER_STREAM):
                    crew.spawn(latest_subscriber, (name, k), name, crew.stop, crew.deadline,
                               os.getpid())
            for name in names:
                crew.decode(video, name, "--format", level.fmt, "--loop",
                            "--threads", str(level.threads))
            crew.collect("ready", SUBS_PER_STREAM * n, STARTUP_TIMEOUT, live.starting)
            crew.wait(WARM_UP, live.warming)
            decoders, subscribers = crew.pids()
            before, t0 = _snapshot(decoders, subscribers), time.time_ns()
            live.begin()
            crew.wait(level.seconds, live.measuring)
            t1, after = time.time_ns(), _snapshot(decoders, subscribers)
            crew.stop.set()
            reports = crew.collect("result", SUBS_PER_STREAM * n, 30.0)
    except RuntimeError as exc:
        err.print(f"    [red]failed[/]: {exc}", highlight=False)
        return LevelResult(level, error=str(exc))
    result = analyse_level(level, video, reports, (t0, t1), (before, after))
    err.print(f"    {_level_line(result)} ({time.monotonic() - started:.0f} s)", highlight=False)
    return result


class _LiveLevel:
    """What a capacity level shows while it runs, from the subscribers' ticks."""

    def __init__(self, level: Level) -> None:
        self.level = level
        self.ticker: Ticker | None = None
        self.latest: dict = {}  # role -> (fps, max age ms) of the last second
        self.worst_age = 0.0
        self.started = time.monotonic()

    def starting(self, role, payload) -> None:
        self._show(f"starting: waiting for a first frame at all "
                   f"{SUBS_PER_STREAM * self.level.streams} subscribers "
                   f"({time.monotonic() - self.started:.0f} s)")

    def warming(self, role, payload) -> None:
        self._take(role, payload)
        self._show(f"warming up {WARM_UP:g} s: {self._figures()}")

    def begin(self) -> None:
        self.worst_age, self.started = 0.0, time.monotonic()

    def measuring(self, role, payload) -> None:
        if self._take(role, payload):
            self.worst_age = max(self.worst_age, payload[1])
        elapsed = time.monotonic() - self.started
        self._show(f"measuring {elapsed:.0f}/{self.level.seconds:g} s: {self._figures()}, "
                   f"max age so far {self.worst_age:.0f} ms")

    def _take(self, role, payload) -> bool:
        if payload is None:
            return False
        self.latest[role] = payload
        return True

    def _figures(self) -> str:
        if not self.latest:
            return "no figures yet"
        fps = [f for f, _ in self.latest.values()]
        age = max(a for _, a in self.latest.values())
        return (f"fps/sub last second {min(fps):.0f}..{max(fps):.0f}, max age {age:.0f} ms, "
                f"load {os.getloadavg()[0]:.1f}")

    def _show(self, text: str) -> None:
        if self.ticker is not None:
            self.ticker.update(f"{self.level}: {text}")


def _snapshot(decoders: list[int], subscribers: list[int]) -> dict:
    return {"wall": time.perf_counter(), "busy": machine_busy(),
            "decoders": sum(process_cpu(p) for p in decoders),
            "subscribers": sum(process_cpu(p) for p in subscribers),
            "bench": process_cpu(os.getpid())}


def analyse_level(level: Level, video: Video, reports: dict, window: tuple[int, int],
                  usage: tuple[dict, dict]) -> LevelResult:
    t0, t1 = window
    seconds = (t1 - t0) / 1e9
    result = LevelResult(level, load=os.getloadavg()[0])
    ages, lags = [], []
    seqs: dict[str, list[np.ndarray]] = {}
    for (stream, _), report in sorted(reports.items()):
        seq, stamp, arrival = report["log"].T
        inside = (arrival >= t0) & (arrival < t1)
        result.fps.append(np.count_nonzero(inside) / seconds)
        ages.append((arrival - stamp)[inside] / 1e6)
        lags.append(schedule_lag(arrival, report["media"], video.duration)[inside])
        result.drops += int(np.sum(np.diff(seq[inside]) - 1)) if inside.any() else 0
        result.overwritten += report["overwritten"]
        result.rejected += report["rejected"]
        seqs.setdefault(stream, []).append(seq[inside])
    result.ages, result.lags = np.concatenate(ages), np.concatenate(lags)
    # Frames each decoder published in the window: the span of seqs its subscribers saw.
    published = sum(int(np.ptp(np.concatenate(s))) + 1 for s in seqs.values()
                    if sum(a.size for a in s))
    before, after = usage
    wall = after["wall"] - before["wall"]
    spent = {k: after[k] - before[k] for k in ("busy", "decoders", "subscribers", "bench")}
    result.decoder_ms = 1000 * spent["decoders"] / max(1, published)
    result.cores = {"decoders": spent["decoders"] / wall,
                    "subscribers": spent["subscribers"] / wall,
                    "others": max(0.0, spent["busy"] - spent["decoders"] - spent["subscribers"]
                                  - spent["bench"]) / wall}
    return result


def schedule_lag(arrival_ns: np.ndarray, media: np.ndarray, duration: float) -> np.ndarray:
    """How late each frame arrived against the file's own timing, in ms.

    framebus decode restarts its clock at every pass of a looped file, so each pass has its
    own schedule: the lag is measured from the pass's most punctual frame (over the whole
    log, warm-up included).
    """
    late = arrival_ns / 1e9 - media
    passes = np.floor((media + 0.5 / FPS) / duration)
    lag = np.full(late.shape, np.nan)
    for p in np.unique(passes[~np.isnan(passes)]):
        mask = passes == p
        lag[mask] = late[mask] - late[mask].min()
    return lag * 1000


def _level_line(r: LevelResult) -> str:
    if r.error:
        return "[red]failed[/]"
    verdict = "[green]pass[/]" if r.passed else "[red]miss[/]"
    return (f"{verdict}: fps/sub min {min(r.fps):.1f}, age p99 {np.percentile(r.ages, 99):.1f} "
            f"max {r.ages.max():.1f} ms ({r.over} over {MAX_AGE_MS:g} ms), lag max "
            f"{np.nanmax(r.lags):.0f} ms, decoder CPU {r.decoder_ms:.1f} ms/frame, cores "
            f"decoders {r.cores['decoders']:.2f} subs {r.cores['subscribers']:.2f} others "
            f"{r.cores['others']:.2f}, load {r.load:.1f}")


def largest_passing(results: list[LevelResult]) -> int:
    """The largest N of the run of passing levels from the first one; 0 if none passed."""
    best = 0
    for r in results:
        if not r.passed:
            break
        best = r.level.streams
    return best


# -- output ----------------------------------------------------------------------------------------

THROUGHPUT_COLUMNS = ("system", "what runs", "frames/s median", "runs", "spread",
                      "vs PyAV + to_ndarray", "CPU ms/frame", "others (cores)", "frames")
CAPACITY_COLUMNS = ("format", "threads", "streams", "fps/sub min / mean",
                    "age ms p50 / p99 / max", f"> {MAX_AGE_MS:g} ms", "lag ms p99 / max",
                    "drops", "decoder CPU ms/frame", "cores dec / subs / others", "load",
                    "verdict")


def throughput_cells(rows: list[ThroughputRow], video: Video) -> list[list[str]]:
    baseline = next((r.median for r in rows if r.system.key == "pyav-bgr24"), None)
    cells = []
    for row in rows:
        head = [row.system.label, row.system.how]
        if not row.runs:
            cells.append(head + ["failed"] + [""] * (len(THROUGHPUT_COLUMNS) - 3))
            continue
        fps, med = row.fps, row.median
        spread = (max(fps) - min(fps)) / med
        ratio = f"{med / baseline:.2f}x" if baseline else "-"
        cpu = median(r["cpu_ms"] for r in row.runs)
        others = median(r["others"] for r in row.runs)
        cells.append(head + [f"{med:.1f}", " / ".join(f"{f:.0f}" for f in fps),
                             f"{spread:.0%}", ratio, f"{cpu:.2f}", f"{others:.2f}",
                             _frames_cell(row, video)])
    return cells


def _frames_cell(row: ThroughputRow, video: Video) -> str:
    """Frames decoded per run (whole file), or for framebus frames received in the window."""
    if row.system.key.startswith("framebus-"):
        expected = MEASURED_PASSES * video.frames
        got = [r["received"] for r in row.runs]
        text = f"{min(got)}/{expected} per run"
        lost = [expected - g for g in got if g != expected]
        return text + (f", {max(lost)} lost" if lost else ", none lost")
    got = sorted({r["frames"] for r in row.runs})
    return "/".join(map(str, got)) + ("" if got == [video.frames] else f" (file: {video.frames})")


def capacity_cells(results: list[LevelResult]) -> list[list[str]]:
    cells = []
    for r in results:
        lvl = r.level
        head = [lvl.fmt, str(lvl.threads), str(lvl.streams)]
        if r.error:
            cells.append(head + ["failed"] + [""] * (len(CAPACITY_COLUMNS) - 5) + ["MISS"])
            continue
        p50, p99 = np.percentile(r.ages, [50, 99])
        lag99, lagmax = np.nanpercentile(r.lags, 99), np.nanmax(r.lags)
        c = r.cores
        cells.append(head + [
            f"{min(r.fps):.1f} / {np.mean(r.fps):.1f}",
            f"{p50:.1f} / {p99:.1f} / {r.ages.max():.1f}", str(r.over),
            f"{lag99:.0f} / {lagmax:.0f}", str(r.drops), f"{r.decoder_ms:.1f}",
            f"{c['decoders']:.2f} / {c['subscribers']:.2f} / {c['others']:.2f}",
            f"{r.load:.1f}", "PASS" if r.passed else "MISS"])
    return cells


def rich_table(title: str, columns: tuple[str, ...], cells: list[list[str]], caption: str,
               left: tuple[str, ...]) -> Table:
    table = Table(title=title, header_style="bold", caption=caption)
    for name in columns:
        table.add_column(name, justify="left" if name in left else "right")
    for row in cells:
        table.add_row(*row, style="bold" if row[0].startswith("framebus") else None)
    return table


def throughput_caption(video: Video) -> str:
    return (f"Each run decodes in processes of its own. PyAV and OpenCV: the whole file once, "
            f"frames / time from before the first frame to after the last. framebus: "
            f"`framebus decode --fast --loop` into the bus, one subscriber (mode all) times "
            f"{MEASURED_PASSES} whole passes after the one it joined in, from the first frame "
            f"of a pass to the first frame {MEASURED_PASSES} passes later, and checks it "
            f"received all of them. Spread: (max - min) / median. CPU ms/frame: of the "
            f"decoding process (framebus: the decoder, not the subscriber). Others: CPU the "
            f"machine spent meanwhile on anything but this benchmark, in cores of "
            f"{os.cpu_count()}.")


def capacity_caption(seconds: float) -> str:
    return (f"N `framebus decode FILE --loop` at the file's own {FPS} fps, {SUBS_PER_STREAM} "
            f"subscriber processes each (mode latest, read one pixel per frame), measured "
            f"for {seconds:g} s after {WARM_UP:g} s of warm-up. A level passes when every "
            f"subscriber gets >= {MIN_FPS:g} fps and no frame is older than {MAX_AGE_MS:g} ms "
            f"when read (age: from the decoder's stamp, taken before converting into the "
            f"slot, to the subscriber holding the array). Lag: how late frames arrive against "
            f"the file's own timing (decoders falling behind); not a criterion. Drops: frames "
            f"published but skipped by a subscriber. Cores: CPU used in the window by the "
            f"decoders, the subscribers and everything else on the machine.")


@dataclass
class Target:
    what: str
    value: float | None
    goal: float
    strict: bool = False  # value > goal instead of >=
    detail: str = ""
    unit: str = "x"

    @property
    def passed(self) -> bool:
        if self.value is None or math.isnan(self.value):
            return False
        return self.value > self.goal if self.strict else self.value >= self.goal


def targets(rows: list[ThroughputRow], capacity: dict[tuple[str, int], list[LevelResult]],
            max_streams: int) -> list[Target]:
    by_key = {r.system.key: r.median for r in rows}
    fb, pyav, cv = by_key.get("framebus-bgr24"), by_key.get("pyav-bgr24"), by_key.get("opencv")
    found = [
        Target("framebus decode bgr24 / plain PyAV decode + to_ndarray(bgr24), frames/s",
               fb / pyav if fb and pyav else None, 0.95, detail=_pair(fb, pyav)),
        Target("framebus decode bgr24 / cv2.VideoCapture, frames/s",
               fb / cv if fb and cv else None, 1.0, strict=True, detail=_pair(fb, cv)),
    ]
    levels = capacity.get(("bgr24", 1))
    if levels is not None:
        best = largest_passing(levels)
        found.append(Target(f"1080p {FPS} fps bgr24 streams in real time, {SUBS_PER_STREAM} "
                            "subscribers each, --threads 1", float(best), CAPACITY_GOAL,
                            detail=_capacity_detail(levels, max_streams), unit=" streams"))
    return found


def _pair(a: float | None, b: float | None) -> str:
    return "" if a is None or b is None else f"{a:.1f} vs {b:.1f} fps"


def _capacity_detail(levels: list[LevelResult], max_streams: int) -> str:
    failed = next((r for r in levels if not r.passed), None)
    if failed is None:
        return f"every level up to --max-streams {max_streams} passed"
    if failed.error:
        return f"{failed.level.streams} streams failed to run"
    return (f"{failed.level.streams} streams missed: fps/sub min {min(failed.fps):.1f}, "
            f"max age {failed.ages.max():.0f} ms")


def print_targets(console: Console, found: list[Target]) -> None:
    console.print("\n[bold]Targets[/]")
    for t in found:
        if t.value is None:
            console.print(f"  {verdict(None)} {t.what}: not measured in this run")
            continue
        sign = ">" if t.strict else ">="
        value = f"{t.value:.2f}x" if t.unit == "x" else f"{t.value:.0f}{t.unit}"
        goal = f"{t.goal:g}{t.unit}"
        console.print(f"  {verdict(t.passed)} {t.what} = {value} "
                      f"(target {sign} {goal}; {t.detail})",
                      highlight=False)


def print_capacity_summary(console: Console,
                           capacity: dict[tuple[str, int], list[LevelResult]],
                           max_streams: int) -> None:
    console.print("\n[bold]Capacity[/] (largest N passing, from N = 2 up)")
    for (fmt, threads), levels in capacity.items():
        best = largest_passing(levels)
        tested = ", ".join(str(r.level.streams) for r in levels)
        more = "" if any(not r.passed for r in levels) else " (stopped at --max-streams)"
        found = f"largest passing N = {best}" if best else "no level passed"
        console.print(f"  {fmt}, --threads {threads}: {found}{more}; N tried: {tested}",
                      highlight=False)


def print_notes(console: Console, rows: list[ThroughputRow],
                capacity: dict[tuple[str, int], list[LevelResult]], video: Video,
                leftovers: list[str]) -> None:
    lines = [line for row in rows for line in throughput_notes(row, video)]
    lines += [line for levels in capacity.values() for r in levels for line in level_notes(r)]
    lines += [f"left behind by a stopped decoder (removed now): {item}" for item in leftovers]
    print_section(console, "Notes", lines)


def throughput_notes(row: ThroughputRow, video: Video) -> list[str]:
    label = row.system.label
    lines = [f"{label}: a run failed: {e.strip().splitlines()[-1]}" for e in row.errors]
    runs = [r for r in row.runs if "joined" in r]  # framebus runs
    for r in runs:
        expected = r["first"] * video.duration / video.frames
        if r["boundary_time"] is None or abs(r["boundary_time"] - expected) > 0.5 / FPS:
            lines.append(f"{label}: frame {r['first_seen']} has media time "
                         f"{r['boundary_time']}, not {expected:g} s: pass boundaries off")
        if r["first_seen"] != r["first"] or r["skipped"]:
            lines.append(f"{label}: subscriber skipped frames in its window "
                         f"({r['skipped']}, first frame {r['first_seen']})")
    if runs:
        helper = median(r["helper_ms"] for r in runs)
        joined = ", ".join(str(r["joined"]) for r in runs)
        lines.append(f"{label}: the subscriber used {helper:.2f} ms CPU per frame (not in CPU "
                     "ms/frame; it shares the two cores with the decoder)")
        lines.append(f"{label}: the subscriber, started before the decoder, received its "
                     f"first frame at frame {joined} (frames published before it joined "
                     "reached no one)")
    return lines


def level_notes(r: LevelResult) -> list[str]:
    # Imported here, not at the top: every spawned subscriber imports this module, and the
    # decoder package brings PyAV along.
    from framebus.decoder.worker import LATE as LIVE_LATE

    if r.error:
        return [f"{r.level}: failed: {r.error.strip().splitlines()[-1]}"]
    lines = []
    if r.over == 1:
        anyway = "; the level misses on fps anyway" if min(r.fps) < MIN_FPS else ""
        lines.append(f"{r.level}: a single frame over {MAX_AGE_MS:g} ms ({r.ages.max():.0f} "
                     f"ms; p99 {np.percentile(r.ages, 99):.1f} ms){anyway}")
    lag = float(np.nanmax(r.lags))
    if r.passed and lag > MAX_AGE_MS:
        lines.append(f"{r.level}: passes, yet its decoders fell up to {lag:.0f} ms behind the "
                     "file's timing and caught up; frame age does not show it (it runs from "
                     "the decoder's stamp), and a live source would have dropped frames later "
                     f"than {LIVE_LATE * 1000:g} ms instead")
    if r.overwritten or r.rejected:
        lines.append(f"{r.level}: {r.overwritten} frames overwritten while held, "
                     f"{r.rejected} descriptors rejected")
    return lines


# -- command line ----------------------------------------------------------------------------------


def _formats(ctx, param, value: str) -> list[str]:
    chosen = [f.strip() for f in value.split(",") if f.strip()]
    unknown = [f for f in chosen if f not in FORMATS]
    if unknown or not chosen:
        raise click.BadParameter(f"choose among {', '.join(FORMATS)}, got {value!r}")
    return chosen


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--seconds", type=click.FloatRange(min=1.0), default=8.0, show_default=True,
              help="Measurement window of every capacity level (after warm-up).")
@click.option("--video-seconds", type=click.FloatRange(min=2.0), default=10.0,
              show_default=True, help="Length of the test video (25 fps).")
@click.option("--runs", type=click.IntRange(min=1), default=3, show_default=True,
              help="Throughput runs per system (the median is reported).")
@click.option("--max-streams", type=click.IntRange(min=2), default=10, show_default=True,
              help="Capacity: the largest N tried.")
@click.option("--formats", default=",".join(FORMATS), show_default=True, callback=_formats,
              help="framebus pixel formats for throughput and capacity.")
@click.option("--skip-capacity", is_flag=True, help="Throughput only.")
@click.option("--threads0/--no-threads0", default=True, show_default=True,
              help="Capacity: also run the largest passing bgr24 level with --threads 0.")
@click.option("--markdown", is_flag=True, help="Also print the tables as Markdown.")
def main(seconds: float, video_seconds: float, runs: int, max_streams: int, formats: list[str],
         skip_capacity: bool, threads0: bool, markdown: bool) -> None:
    """Decoding 1080p H.264: plain PyAV and OpenCV against `framebus decode`, and how many
    real-time streams framebus sustains."""
    # SIGTERM unwinds like Ctrl-C, so the cleanup below runs.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    command = _command()
    load_start, started = os.getloadavg(), time.monotonic()
    bench = Bench()
    capacity: dict[tuple[str, int], list[LevelResult]] = {}
    try:
        bench.start_broker()
        mp = get_context("spawn")
        err.print(f"encoding the test video ({video_seconds:g} s) ...", highlight=False)
        video = encode_video(bench.tmp / "test1080.mp4", video_seconds)
        err.print(f"  {video.describe()} ({time.monotonic() - started:.0f} s)", highlight=False)
        err.print(f"throughput, {runs} runs per system, interleaved ...", highlight=False)
        rows = run_throughput(bench, mp, video, throughput_systems(formats), runs)
        if not skip_capacity:
            capacity = run_all_capacity(bench, mp, video, formats, max_streams, seconds,
                                        threads0)
    except KeyboardInterrupt:
        err.print("\n[red]interrupted[/]: children stopped, rings and temp files removed")
        sys.exit(130)
    finally:
        bench.close()
    elapsed = time.monotonic() - started
    report(command, video, rows, capacity, seconds, max_streams, markdown,
           bench.leftovers, (load_start, os.getloadavg()), elapsed)


def run_all_capacity(bench: Bench, mp, video: Video, formats: list[str], max_streams: int,
                     seconds: float, threads0: bool) -> dict[tuple[str, int], list[LevelResult]]:
    capacity = {}
    for fmt in formats:
        err.print(f"capacity, {fmt}, --threads 1, N = 2 .. {max_streams} ...", highlight=False)
        capacity[(fmt, 1)] = run_capacity(bench, mp, video, fmt, 1, max_streams, seconds)
    if threads0 and "bgr24" in formats:
        # The same load with FFmpeg's own threading, at the largest N that passed with one.
        n = max(2, largest_passing(capacity[("bgr24", 1)]))
        err.print(f"capacity, bgr24, --threads 0, N = {n} ...", highlight=False)
        capacity[("bgr24", 0)] = run_capacity(bench, mp, video, "bgr24", 0, n, seconds, start=n)
    return capacity


def _command() -> str:
    python = Path(sys.executable)
    try:
        python = python.relative_to(Path.cwd())
    except ValueError:
        pass
    return shlex.join([str(python), *sys.argv])


def report(command: str, video: Video, rows: list[ThroughputRow],
           capacity: dict[tuple[str, int], list[LevelResult]], seconds: float,
           max_streams: int, markdown: bool, leftovers: list[str],
           loads: tuple[tuple[float, ...], tuple[float, ...]], elapsed: float) -> None:
    import av
    import cv2

    # A pipe gets the tables at full width too, not squeezed into 80 columns.
    out = Console(width=None if sys.stdout.isatty() else 200)
    out.print(f"[bold]command[/]: {command}", highlight=False)
    out.print(f"video: {video.describe()}", highlight=False)
    out.print(f"machine: {os.cpu_count()} cores, load average {_load(loads[0])} at the start, "
              f"{_load(loads[1])} at the end; {elapsed / 60:.1f} min; PyAV {av.__version__} "
              f"(FFmpeg {av.ffmpeg_version_info}), OpenCV {cv2.__version__}", highlight=False)
    left = ("system", "what runs", "format", "verdict")
    tp_cells = throughput_cells(rows, video)
    title = f"Decoding {video.frames} frames of 1080p H.264 at {video.mbps:.1f} Mbit/s"
    out.print(rich_table(title, THROUGHPUT_COLUMNS, tp_cells, throughput_caption(video), left))
    cap_results = [r for levels in capacity.values() for r in levels]
    cap_cells = capacity_cells(cap_results)
    if cap_results:
        out.print(rich_table(f"Real-time 1080p {FPS} fps streams, {SUBS_PER_STREAM} "
                             "subscribers each", CAPACITY_COLUMNS, cap_cells,
                             capacity_caption(seconds), left))
    if markdown:
        out.print()
        out.print(markdown_table(THROUGHPUT_COLUMNS, tp_cells, left) + "\n\n"
                  + throughput_caption(video), markup=False, highlight=False, soft_wrap=True)
        if cap_results:
            out.print()
            out.print(markdown_table(CAPACITY_COLUMNS, cap_cells, left) + "\n\n"
                      + capacity_caption(seconds), markup=False, highlight=False,
                      soft_wrap=True)
    print_targets(out, targets(rows, capacity, max_streams))
    if capacity:
        print_capacity_summary(out, capacity, max_streams)
    print_notes(out, rows, capacity, video, leftovers)


def _load(values: tuple[float, ...]) -> str:
    return " / ".join(f"{v:.2f}" for v in values)


if __name__ == "__main__":
    main()
