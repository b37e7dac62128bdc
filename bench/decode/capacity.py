"""The decode benchmark's capacity runs: N real-time streams, two subscribers each, N = 2, 3,
... until a level fails."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

import numpy as np

from bench.decode.children import latest_subscriber, machine_busy, process_cpu
from bench.decode.crew import Bench, Crew, Ticker
from bench.decode.settings import (
    FPS,
    MAX_AGE_MS,
    MIN_FPS,
    STARTUP_TIMEOUT,
    SUBS_PER_STREAM,
    WARM_UP,
    err,
)
from bench.decode.video import Video


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
