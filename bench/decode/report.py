"""The decode benchmark's output: the tables (rich and Markdown), the targets, the notes."""

from __future__ import annotations

import math
import os
import sys
from dataclasses import dataclass
from statistics import median

import numpy as np
from rich.console import Console
from rich.table import Table

from bench.common import markdown_table, print_section, verdict
from bench.decode.capacity import LevelResult, largest_passing
from bench.decode.settings import (
    CAPACITY_GOAL,
    FPS,
    MAX_AGE_MS,
    MEASURED_PASSES,
    MIN_FPS,
    SUBS_PER_STREAM,
    WARM_UP,
)
from bench.decode.throughput import ThroughputRow
from bench.decode.video import Video
from framebus.decoder.worker import LATE as LIVE_LATE

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
