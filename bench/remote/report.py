"""The remote benchmark's figures from the consumers' logs, and its output: the table (rich
and Markdown), the targets, the notes."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np
from rich.console import Console
from rich.table import Table

from bench import common
from bench.common import format_pair, percentiles, print_section, verdict
from bench.remote.cell import (
    FOUR,
    IMAGEZMQ_RCVHWM,
    SHM_ALONE,
    SHM_LOADED,
    SOLO,
    ZENOH_QUEUE,
    Cell,
    paced_rate,
)
from bench.remote.run import CpuSampler, Environment

# -- turning logs into figures ----------------------------------------------------------------


@dataclass
class Phase:
    """One consumer's figures in one phase."""

    fps: float
    share: float  # of the phase's frames, the part it received
    latency_ms: np.ndarray
    fresh_fps: float  # frames received within the phase at most FRESH_MS old, a second


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

    def fresh_fps(self, phase: str) -> float | None:
        return float(np.mean([c[phase].fresh_fps for c in self.subject])) if self.subject else None

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
    ages = (t_recv - t_write) / 1e6
    fresh = np.count_nonzero(inside & (ages <= FRESH_MS)) / window
    return Phase(float(fps), float(share), ages[inside if slow else published], float(fresh))


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


def fps_text(value: float | None) -> str:
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
        f"{fps_text(row.fps('paced'))} ({row.share('paced'):.0%})",
        fps_text(row.fps("flat")),
        format_pair(row.latency("paced")), format_pair(row.latency("flat")),
        slow_fps, slow_ms, _cpu(row, "flat")]


def caption(sizes: list[tuple[int, int]], flat_fps: float = 0.0) -> str:
    rates = ", ".join(f"{w}x{h}: {paced_rate(w, h):g} fps" for w, h in sizes)
    flat = f"capped at {flat_fps:g} fps (--flat-fps)" if flat_fps else "as fast as it can"
    return (f"Paced: the producer publishes at a fixed rate ({rates}); flat out: {flat} "
            "(imagezmq's and NetGear's PUB sockets drop what their queues cannot take; "
            "framebus's producer copies every frame into its ring). fps/consumer: the fast "
            "consumers' mean (for '1 shm' rows, the local subscriber's), frames received "
            "within the phase; share: of the phase's frames, those it received. The slow "
            "consumer sleeps 0.5 s after each frame; its fps is its pace within the phase. "
            "Latency: producer's clock (framebus: at commit) to the consumer holding the array, "
            "decoded for JPEG. CPU: % of one core, per process (consumer: the fast ones' mean). "
            "framebus-jpeg: quality 90, encoded by the relay once per frame; netgear: PUB/SUB "
            f"(pattern=2), raw frames; imagezmq: PUB/SUB, receive queue {IMAGEZMQ_RCVHWM} "
            f"frames; zenoh: peer to peer over TCP, the newest {ZENOH_QUEUE} samples kept.")


def rich_table(rows: list[Row], seconds: float, sizes: list[tuple[int, int]],
               flat_fps: float = 0.0) -> Table:
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
    table.caption = caption(sizes, flat_fps)
    return table


def markdown_table(rows: list[Row], sizes: list[tuple[int, int]], flat_fps: float = 0.0) -> str:
    cells = [_cells(row) for row in rows]
    left = ("size", "system", "consumers")
    return common.markdown_table(COLUMNS, cells, left) + f"\n\n{caption(sizes, flat_fps)}"


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
    found += _against_imagezmq(get("framebus-raw", hd, SOLO), get("imagezmq", hd, SOLO),
                               get("framebus-raw", hd, FOUR), get("imagezmq", hd, FOUR))
    for size in dict.fromkeys(r.cell.size for r in ok):
        for system in ("framebus-raw", "framebus-jpeg", "imagezmq", "zenoh", "netgear"):
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


#: Issue 15: framebus's flat-out rate with one consumer, at least this times imagezmq's.
FLAT_OUT_RATIO = 1.2
#: Issue 15: the slow consumer's frames are "milliseconds old, not seconds".
FRESH_MS = 100.0


def _against_imagezmq(fb: Row | None, iz: Row | None, fb4: Row | None,
                      iz4: Row | None) -> list[Target]:
    """Issue 15's targets for raw 1080p against imagezmq, measured in the same run."""
    if not (fb and iz):
        return [Target("1080p raw against imagezmq", None, "")]
    (fb50, _), (iz50, _) = fb.latency("paced") or (0, 0), iz.latency("paced") or (0, 0)
    a, b = fb.fps("flat") or 0.0, iz.fps("flat") or 1.0
    found = [
        Target("1080p raw, 1 consumer, paced: latency p50 <= imagezmq's", fb50 <= iz50,
               f"{fb50:.2f} vs {iz50:.2f} ms"),
        Target(f"1080p raw, 1 consumer, flat out{_capped(fb)}: frames/s >= {FLAT_OUT_RATIO}x "
               "imagezmq's",
               a >= FLAT_OUT_RATIO * b, f"{a:,.1f} vs {b:,.1f} fps = {a / b:.2f}x; their "
               f"latency p50/p99 {format_pair(fb.latency('flat'))} vs "
               f"{format_pair(iz.latency('flat'))} ms; {_fresh(fb, iz)}"),
    ]
    if fb4 and iz4 and fb4.slow:
        a4, b4 = fb4.fps("flat") or 0.0, iz4.fps("flat") or 1.0
        found.append(Target(f"1080p raw, 4 consumers, flat out{_capped(fb4)}: frames/s per "
                            "fast consumer >= imagezmq's", a4 >= b4,
                            f"{a4:,.1f} vs {b4:,.1f} fps = {a4 / b4:.2f}x; {_fresh(fb4, iz4)}"))
        ages = [float(np.median(fb4.slow[p].latency_ms)) for p in PHASES
                if fb4.slow[p].latency_ms.size]
        found.append(Target(f"1080p raw, the slow consumer's frames under {FRESH_MS:g} ms old "
                            "(paced and flat out)", bool(ages) and max(ages) < FRESH_MS,
                            f"{_median_ms(fb4.slow, 'paced')} / {_median_ms(fb4.slow, 'flat')} "
                            f"ms (imagezmq's: {_median_ms(iz4.slow, 'paced')} / "
                            f"{_median_ms(iz4.slow, 'flat')} ms)"))
    return found


def _capped(row: Row) -> str:
    """Says so when the flat-out phase was capped: then it is not the issue's flat out."""
    return f" (producers capped at {row.cell.flat_fps:g} fps)" if row.cell.flat_fps else ""


def _fresh(fb: Row, iz: Row) -> str:
    """The flat-out rate a live consumer can use: frames at most FRESH_MS old when taken."""
    return (f"frames under {FRESH_MS:g} ms old: {fb.fresh_fps('flat') or 0:,.1f} vs "
            f"{iz.fresh_fps('flat') or 0:,.1f} fps")


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
                f"{fps_text(remote)} fps each)")
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
                         f"{fps_text(row.other_fps('paced'))} fps paced, "
                         f"{fps_text(row.other_fps('flat'))} flat out, latency p50/p99 paced "
                         f"{format_pair(percentiles([o['paced'].latency_ms for o in row.others]))}"
                         " ms")
        lines += [f"{row.cell}: {note}" for note in row.notes]
    if env.relay_restarts:
        lines.append(f"the relay died and was restarted {env.relay_restarts} time(s)")
    lines += [f"left behind by a producer (removed now): {item}" for item in env.leftovers]
    print_section(console, "Notes", lines)  # never empty: the machine line comes first
