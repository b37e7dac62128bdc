"""The broker benchmark's figures from the children's logs, and its output: the table (rich
and Markdown), the targets against issue 14's, the notes."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from rich.console import Console
from rich.table import Table

from bench import common
from bench.broker.load import GIVE_UP, NOT_FOUND
from bench.broker.run import AS_IS, LIFTED, POLL_EVERY, RATE, WATCH_FOR, Measured, Scale
from bench.common import format_pair, percentiles, print_section, verdict
from framebus import config

#: Issue 14's targets.
TARGET_STREAMS = 3200
TARGET_LOOKUP_P99_MS = 10.0
TARGET_DEAD_NOTICED = 2.0
TARGET_CPU = 0.5


@dataclass
class Row:
    m: Measured
    error: str | None = None
    offered: float = math.nan  # heartbeats a second the schedule asks for
    sent: float = math.nan
    answered: float = math.nan
    beats: int = 0  # sent within the steady phase
    late: int = 0  # answered after more than an interval
    unanswered: int = 0  # not answered within GIVE_UP, or at all
    beat_refused: dict[str, int] = field(default_factory=dict)
    beat_rtt: tuple[float, float] | None = None  # ms
    lookups: float = math.nan  # a second
    lookup_ms: tuple[float, float] | None = None
    lookup_timeouts: int = 0
    lookup_false_dead: int = 0
    not_found: int = 0
    cpu: float | None = None  # of one core
    stopped: int = 0
    dead_all: float | None = None  # s from the stop until every stopped one was seen dead
    dead_first: float | None = None
    dead_since_beat: float | None = None  # the most, from a stream's last heartbeat
    missing: int = 0  # stopped but never seen dead
    watch_false_dead: int = 0
    list_ms: tuple[float, float] | None = None  # the death watch's polls, p50 and max

    @property
    def scale(self) -> Scale:
        return self.m.scale


def analyse(m: Measured, error: str | None = None) -> Row:
    row = Row(m, error)
    if error or not m.producers:
        return row
    t0, t1 = m.t0, m.t1
    seconds = t1 - t0
    sent = np.concatenate([p["sent"] for p in m.producers])
    answered = np.concatenate([p["answered"] for p in m.producers])
    inside = (sent >= t0) & (sent < t1)
    rtt = (answered - sent)[inside]
    row.offered = m.accepted / m.interval
    row.beats = int(inside.sum())
    row.sent = row.beats / seconds
    row.answered = np.count_nonzero((answered >= t0) & (answered < t1)) / seconds
    row.late = int(np.count_nonzero((rtt > config.HEARTBEAT_INTERVAL) & (rtt <= GIVE_UP)))
    row.unanswered = int(np.count_nonzero(np.isnan(rtt) | (rtt > GIVE_UP)))
    row.beat_rtt = percentiles([rtt[~np.isnan(rtt)] * 1000])
    for p in m.producers:
        for code, n in p["refused"].items():
            row.beat_refused[code] = row.beat_refused.get(code, 0) + n
    looks = np.concatenate([s["lookups"] for s in m.subscribers])
    looks = looks[(looks[:, 0] >= t0) & (looks[:, 0] < t1)]
    latency = (looks[:, 1] - looks[:, 0]) * 1000
    row.lookups = len(looks) / seconds
    row.lookup_ms = percentiles([latency[~np.isnan(latency)]])
    row.lookup_timeouts = int(np.isnan(latency).sum())
    row.lookup_false_dead = int(np.count_nonzero(looks[:, 2] == 0))
    row.not_found = int(np.count_nonzero(looks[:, 2] == NOT_FOUND))
    row.cpu = None if m.cpu is None else m.cpu / seconds
    if m.watch:
        _deaths(row, m)
    return row


def _deaths(row: Row, m: Measured) -> None:
    w = m.watch
    assert w is not None
    row.stopped, row.missing = w["stopped"], len(w["missing"])
    row.watch_false_dead = w["false_dead"]
    since_stop, since_beat = [], []
    for p in m.producers:
        for name, last in p["killed"].items():
            if name in w["seen"]:
                since_stop.append(w["seen"][name] - p["killed_at"])
                since_beat.append(w["seen"][name] - last)
    if since_stop and not row.missing:
        row.dead_all = max(since_stop)
    if since_stop:
        row.dead_first = min(since_stop)
        row.dead_since_beat = float(np.nanmax(since_beat))
    rtts = np.array(w["rtts"]) * 1000
    if rtts.size:
        row.list_ms = float(np.median(rtts)), float(rtts.max())


# -- output -----------------------------------------------------------------------------------

FIGURES = ("hosts", "streams registered", "registrations refused", "heartbeats/s offered",
           "heartbeats/s sent", "heartbeats/s answered", "heartbeats late (>0.5 s)",
           "heartbeats unanswered (>1 s)", "heartbeat RTT ms p50/p99", "lookups/s",
           "lookup ms p50/p99", "broker CPU (of a core)", "broker waiting for a CPU",
           "broker RSS MB", "load's CPU: producers, subscribers", "producers stopped",
           "all seen dead after (s)", "1-min load, start-end")


def _n(value: float) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:,.0f}"


def _load_cpu(row: Row) -> str:
    seconds = row.m.t1 - row.m.t0
    return ", ".join(f"{row.m.load_cpu.get(k, math.nan) / seconds:.2f}"
                     for k in ("producers", "subscribers"))


def _heading(row: Row) -> str:
    return f"{row.scale.streams:,}" + (f" ({row.scale.mode})" if row.scale.mode else "")


def _column(row: Row) -> list[str]:
    """One scale's figures, in the order of FIGURES."""
    m, s = row.m, row.scale
    if row.error:
        return [str(s.hosts), "failed"] + [""] * (len(FIGURES) - 2)
    refused = ", ".join(f"{n:,} {code}" for code, n in sorted(m.refused.items())) or "0"
    dead = "-"
    if row.stopped:
        dead = (f"{row.dead_all:.2f}" if row.dead_all is not None
                else f"{row.stopped - row.missing:,} of {row.stopped:,} in {WATCH_FOR:g} s")
    return [
        str(s.hosts), f"{m.accepted:,} of {s.streams:,}", refused, _n(row.offered),
        _n(row.sent), _n(row.answered), f"{row.late:,}", f"{row.unanswered:,}",
        format_pair(row.beat_rtt), _n(row.lookups), format_pair(row.lookup_ms),
        "-" if row.cpu is None else f"{row.cpu:.2f}",
        "-" if m.waited is None else f"{m.waited / (m.t1 - m.t0):.1%}",
        "-" if m.rss_mb is None else f"{m.rss_mb:.0f}", _load_cpu(row),
        f"{row.stopped:,}" if row.stopped else "-",
        dead, f"{m.load[0]:.2f}-{m.load[1]:.2f}"]


def caption(seconds: float) -> str:
    return (
        "Each column: a fresh `framebus broker` process; simulated producers (DEALER sockets, "
        "no frames) on hosts that are not this one register, and each heartbeats every "
        f"{config.HEARTBEAT_INTERVAL:g} s from its registration on, while subscribers "
        "(BrokerClient) look random registered streams up; figures over a "
        f"{seconds:g} s steady phase. A (rate) column runs the streams the broker took at the "
        "heartbeat rate of all the streams asked; a (cap lifted) column, all of them against a "
        "broker whose cap of streams was raised (framebus.broker.MAX_STREAMS set in its "
        "process). Late: answered after more than an interval; unanswered: not within "
        f"{GIVE_UP:g} s (BrokerClient's timeout). CPU: of one core (utime+stime, every "
        "thread); waiting for a CPU: the share of the phase its threads were runnable but not "
        "running (/proc schedstat), what other processes cost it; RSS at the phase's end. "
        "Then the heartbeats of up to 1,000 streams stop at once, and `list` is polled every "
        f"{POLL_EVERY * 1000:.0f} ms (or 5 times as long as it took): all seen dead after is "
        "seconds from that stop until the broker showed every one of them dead.")


def rich_table(rows: list[Row], seconds: float) -> Table:
    """The scales side by side, a column each; a figure a row."""
    table = Table(title="framebus broker under load: heartbeats, lookups, deaths, by streams "
                  "asked", header_style="bold", caption=caption(seconds))
    table.add_column("figure", justify="left")
    for row in rows:
        table.add_column(_heading(row), justify="right",
                         style="dim" if row.scale.mode else None)
    columns = [_column(row) for row in rows]
    for i, name in enumerate(FIGURES):
        table.add_row(name, *(c[i] for c in columns))
    return table


def markdown_table(rows: list[Row], seconds: float) -> str:
    columns = [_column(row) for row in rows]
    cells = [[name, *(c[i] for c in columns)] for i, name in enumerate(FIGURES)]
    return (common.markdown_table(["streams asked", *map(_heading, rows)], cells,
                                  ("streams asked",)) + f"\n\n{caption(seconds)}")


# -- targets ------------------------------------------------------------------------------------


def print_targets(console: Console, rows: list[Row]) -> None:
    """Issue 14's targets, at the largest scale run. When the broker refused some of its
    streams, the verdict on load is taken from its (cap lifted) column, else from its (rate)
    column, and every column's figure is given."""
    done = [r for r in rows if not r.error]
    real = [r for r in done if r.scale.mode == AS_IS]
    if not real:
        console.print("\n[bold]Targets[/]: nothing measured")
        return
    top = max(real, key=lambda r: r.scale.streams)
    n = top.scale.streams
    same = {r.scale.mode: r for r in done if r.scale.streams == n}
    sources = [same[mode] for mode in (LIFTED, RATE, AS_IS) if mode in same]
    console.print(f"\n[bold]Targets[/] (issue 14), at the largest scale asked, {n:,} streams")
    refused = n - top.m.accepted
    lifted = f"; with the cap lifted, {same[LIFTED].m.accepted:,}" if LIFTED in same else ""
    _target(console, top.m.accepted >= TARGET_STREAMS,
            f"{TARGET_STREAMS:,} streams registered: {top.m.accepted:,}"
            + (f" ({refused:,} refused: {_codes(top.m.refused)}){lifted}" if refused else ""))

    def figures(get, unit: str) -> tuple[float | None, str]:
        parts = [f"{value:.2f}{unit} {_where(r)}" for r in sources
                 if (value := get(r)) is not None]
        return get(sources[0]), "; ".join(parts) or "not measured"

    p99, text = figures(lambda r: r.lookup_ms[1] if r.lookup_ms else None, " ms")
    _target(console, None if p99 is None else p99 < TARGET_LOOKUP_P99_MS,
            f"lookup p99 under {TARGET_LOOKUP_P99_MS:g} ms: {text}")
    dead_rows = [r for r in sources if r.stopped]
    if dead_rows:
        parts = []
        for r in dead_rows:
            parts.append((f"{r.missing:,} of {r.stopped:,} never seen dead" if r.dead_all is None
                          else f"all {r.stopped:,} stopped seen dead {r.dead_all:.2f} s after "
                          "the stop") + f" {_where(r)}")
        first = dead_rows[0]
        _target(console, first.dead_all is not None and first.dead_all <= TARGET_DEAD_NOTICED,
                f"a dead producer noticed within {TARGET_DEAD_NOTICED:g} s: " + "; ".join(parts))
    else:
        _target(console, None, f"a dead producer noticed within {TARGET_DEAD_NOTICED:g} s: "
                "not measured (--kill 0)")
    cpu, text = figures(lambda r: r.cpu, " core")
    _target(console, None if cpu is None else cpu < TARGET_CPU,
            f"broker below {TARGET_CPU:g} core: {text}")


def _where(row: Row) -> str:
    if row.scale.mode == RATE:
        return (f"(the {row.m.accepted:,} registered at {row.scale.streams:,} streams' "
                "heartbeat rate)")
    if row.scale.mode == LIFTED:
        return f"(cap lifted, {row.m.accepted:,} registered)"
    return f"(as is, {row.m.accepted:,} registered)"


def _target(console: Console, passed: bool | None, text: str) -> None:
    console.print(f"  {verdict(passed)} {text}", highlight=False)


def _codes(codes: dict[str, int]) -> str:
    return ", ".join(f"{n:,} {code!r}" for code, n in sorted(codes.items()))


def print_notes(console: Console, rows: list[Row], cores: int | None) -> None:
    lines = [f"{cores} cores; the load average of each row is at its start and its end "
             "(the load's own processes count in it)"]
    for row in rows:
        m, label = row.m, str(row.scale)
        if row.error:
            lines.append(f"{label}: [red]failed[/]: {row.error.strip().splitlines()[-1]}")
            continue
        if m.refused:
            lines.append(f"{label}: the broker refused {sum(m.refused.values()):,} of "
                         f"{m.scale.streams:,} registrations ({_codes(m.refused)}); "
                         f"{m.accepted:,} took {m.register_seconds:.2f} s")
        if m.scale.mode == RATE:
            lines.append(f"{label}: each of the {m.accepted:,} beat every "
                         f"{m.interval * 1000:.0f} ms")
        if row.sent < 0.97 * row.offered:
            lines.append(f"{label}: heartbeats sent fell {1 - row.sent / row.offered:.0%} short "
                         "of the schedule (a producer waits for its last reply, as real ones do)")
        if row.beat_refused:
            lines.append(f"{label}: heartbeats refused: {_codes(row.beat_refused)}")
        if row.lookup_timeouts or row.lookup_false_dead or row.not_found:
            lines.append(f"{label}: lookups unanswered within {GIVE_UP:g} s: "
                         f"{row.lookup_timeouts:,}; live streams shown dead: "
                         f"{row.lookup_false_dead:,}; not found: {row.not_found:,}")
        if row.stopped and m.watch:
            lines.append(
                f"{label}: stopped {row.stopped:,}; first seen dead "
                f"{_s(row.dead_first)} after the stop, the last {_s(row.dead_since_beat)} after "
                f"its own last heartbeat (dead after {config.DEAD_AFTER:g} s); live streams "
                f"shown dead meanwhile: {row.watch_false_dead:,}; `list` round trip "
                f"p50/max {format_pair(row.list_ms, 1)} ms, polled every "
                f"{POLL_EVERY * 1000:.0f}-{m.watch['period'] * 1000:.0f} ms")
        if m.peak_rss_mb is not None:
            lines.append(f"{label}: broker peak RSS {m.peak_rss_mb:.0f} MB; its log: "
                         + ", ".join(f"{v:,} {k}" for k, v in m.log.items()))
        if m.broker_exit not in (0, None):
            lines.append(f"{label}: the broker exited with {m.broker_exit}")
    print_section(console, "Notes", lines)


def _s(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f} s"
