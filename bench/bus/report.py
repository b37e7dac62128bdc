"""The bus benchmark's figures from the subscribers' logs, and its output: the table (rich
and Markdown), the targets, the producer's floors, the notes."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from rich.console import Console
from rich.table import Table

from bench import common
from bench.bus.cell import GRACE, ZMQ_HWM, Cell, subscribers
from bench.common import format_pair, percentiles, print_section, verdict

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
    cpu_ms: float = float("nan")  # consumer CPU per frame in the paced phase, mean of subs
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
    fps, drops, paced_ms, flat_ms, paced_copy_ms, cpu = [], [], [], [], [], []
    for report in reports:
        seq, t_write, t_start, t_recv, t_cpu = report["samples"].T
        in_paced = (seq >= paced["first"]) & (seq < paced["end"])
        in_flat = (seq >= flat["first"]) & (seq < flat["end"])
        # The rate counts what arrived within the phase; drops what never arrived at all.
        fps.append(np.count_nonzero(in_flat & (t_recv <= flat["t1"])) / flat_seconds)
        drops.append(flat_count - np.count_nonzero(in_flat))
        row.paced_drops += (paced["end"] - paced["first"]) - np.count_nonzero(in_paced)
        paced_ms.append((t_recv - t_write)[in_paced] / 1e6)
        flat_ms.append((t_recv - t_write)[in_flat] / 1e6)
        paced_copy_ms.append((t_recv - t_start)[in_paced] / 1e6)
        if np.count_nonzero(in_paced) > 1:  # CPU between the first and last paced frames
            spent = t_cpu[in_paced]
            cpu.append((spent.max() - spent.min()) / 1e6 / (np.count_nonzero(in_paced) - 1))
    row.cpu_ms = float(np.mean(cpu)) if cpu else float("nan")
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
           "latency ms paced p50/p99", "latency ms flat out p50/p99", "drops/sub flat out",
           "consumer CPU ms/frame paced")


def _cells(row: Row) -> list[str]:
    c = row.cell
    head = [c.size, str(c.subs), c.system]
    if row.error:
        return head + ["failed"] + [""] * (len(COLUMNS) - 4)
    fps = f"{row.fps:,.0f}" if row.fps >= 100 else f"{row.fps:.1f}"
    return head + [f"{row.producer_fps:,.0f}", fps, f"{row.mbps:,.0f}",
                   format_pair(row.paced), format_pair(row.flat),
                   f"{row.drops:,.0f} ({row.drop_share:.0%})", f"{row.cpu_ms:.3f}"]


CAPTION = (
    "Flat out, the producer publishes as fast as it can: PUB sockets silently drop what "
    f"exceeds their queue (zmq: {ZMQ_HWM} frames, imagezmq: 1000), framebus subscribers keep "
    "only the newest frame. fps/sub counts the frames received within the flat-out phase, "
    f"drops its frames still not received {GRACE:g} s after it. framebus moves no pixels: its "
    "MB/s is fps x frame size. Latency runs from the producer's clock at publish (framebus: "
    "at commit, after the copy into the slot; iceoryx2: after the copy into the loaned "
    "sample) to the subscriber holding the array. Consumer CPU: the subscriber process's "
    "CPU time between its first and last frame of the paced phase, per frame.")


def rich_table(rows: list[Row], seconds: float) -> Table:
    table = Table(title=f"framebus vs iceoryx2 vs raw pyzmq vs imagezmq, bgr24, {seconds:g} s "
                        "per phase",
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


def print_targets(console: Console, found: list[Target], title: str = "Targets") -> None:
    console.print(f"\n[bold]{title}[/] (ratios from this run)")
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
