"""The soak's run: the site started, the chaos loop, the whole site SIGKILLed and started
again, then stopped cleanly; what every process did, gathered into one report dict
(judged by report.py)."""

from __future__ import annotations

import logging
import os
import re
import signal
import statistics
import threading
import time
from pathlib import Path

from rich.live import Live
from rich.table import Table

from . import intruder
from .chaos import BACK_WITHIN, RESUME_WITHIN, Chaos, Fault
from .site import STREAMS, Site, memory

log = logging.getLogger("soak")

#: Memory and descriptors are judged over the second phase, from this long into it.
SETTLE = 10.0
#: Growth of resident memory over the second phase that is still noise.
RSS_NOISE_MIB, RSS_NOISE_SHARE = 4.0, 0.05
FD_NOISE = 4
SAMPLE_EVERY = 2.0


class Sampler(threading.Thread):
    """Resident memory and open descriptors of every long-lived process, every 2 s."""

    def __init__(self, site: Site) -> None:
        super().__init__(daemon=True, name="soak-sampler")
        self.site = site
        self.samples: dict[tuple[str, int], list[tuple[float, float, int]]] = {}
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.wait(SAMPLE_EVERY):
            now = time.monotonic()
            processes = dict(self.site.pids())
            processes |= {agent.name: agent.pid for agent in self.site.agents() if agent.pid}
            for role, pid in processes.items():
                reading = memory(pid)
                if reading:
                    self.samples.setdefault((role, pid), []).append((now, *reading))

    def judged(self, since: float) -> list[dict]:
        """Per role, the process that lived through [since, end]: its memory then and at the end."""
        rows = []
        for (role, pid), samples in sorted(self.samples.items()):
            window = [s for s in samples if s[0] >= since]
            if len(window) < 8 or samples[0][0] > since:
                continue  # not alive for the whole of the second phase
            # The first and the last quarter of the window, each by its median: a leak
            # moves the whole quarter, a passing peak (a burst of requests) does not.
            quarter = len(window) // 4
            start, end = window[:quarter], window[-quarter:]
            rss0, rss1 = (statistics.median(s[1] for s in part) for part in (start, end))
            fd0, fd1 = (int(statistics.median(s[2] for s in part)) for part in (start, end))
            growth = rss1 - rss0
            flat = growth <= max(RSS_NOISE_MIB, RSS_NOISE_SHARE * rss0) and fd1 - fd0 <= FD_NOISE
            rows.append({"role": role, "pid": pid, "rss_first": samples[0][1], "rss_start": rss0,
                         "rss_end": rss1, "growth": growth, "fds_start": fd0, "fds_end": fd1,
                         "minutes": (window[-1][0] - window[0][0]) / 60, "flat": flat,
                         "series": [(round(t - since, 1), round(rss, 2), fds)
                                    for t, rss, fds in window]})
        return rows


# -- the logs ----------------------------------------------------------------------------------

_CHILD = re.compile(r"\] \[([\w.-]+)\] ")  # a child's line, as `up` relays it
_LEVEL = re.compile(r"\b(WARNING|ERROR|CRITICAL)\b")


def log_counts(site: Site) -> dict[str, dict[str, int]]:
    """Warnings, errors and tracebacks per process, from up's log and every agent's."""
    counts: dict[str, dict[str, int]] = {}

    def count(who: str, line: str) -> None:
        c = counts.setdefault(who, {"warnings": 0, "errors": 0, "tracebacks": 0})
        if "Traceback (most recent call last)" in line:
            c["tracebacks"] += 1
        level = _LEVEL.search(line)
        if level:
            c["warnings" if level.group(1) == "WARNING" else "errors"] += 1

    for line in site.up_log.read_text(errors="replace").splitlines():
        child = re.search(r" \[([\w.-]+)\] ", line)
        count(child.group(1) if child else "up", line.split("] ", 1)[-1] if child else line)
    for agent in site.agents():
        if agent.log_path.exists():
            for line in agent.log_path.read_text(errors="replace").splitlines():
                count(agent.name, line)
    return counts


def tracebacks(site: Site) -> list[str]:
    """The first line of every traceback in the logs, with where it was."""
    found = []
    for path in [site.up_log, *(a.log_path for a in site.agents())]:
        lines = path.read_text(errors="replace").splitlines() if path.exists() else []
        for i, line in enumerate(lines):
            if "Traceback (most recent call last)" in line:
                tail = next((x for x in lines[i + 1:i + 40] if not x.lstrip(" [").startswith(
                    ("File", "Traceback")) and "Error" in x), "")
                found.append(f"{path.name}: {tail.strip()[:200]}")
    return found


# -- the run -----------------------------------------------------------------------------------

def crash_and_restart(site: Site) -> dict:
    """SIGKILL the whole site at once, as a power cut of its processes would; start it again.

    `up` is stopped first, so that it neither restarts its children nor cleans after them:
    what they leave is what the next start must reclaim.
    """
    pids = site.pids()
    up = pids.pop("up", None)
    if up:
        os.kill(up, signal.SIGSTOP)
    for pid in pids.values():
        os.kill(pid, signal.SIGKILL)
    if up:
        os.kill(up, signal.SIGKILL)
        site.up.wait()
    deadline = time.monotonic() + 10
    while any(os.path.exists(f"/proc/{p}") for p in pids.values()) and time.monotonic() < deadline:
        time.sleep(0.05)
    left = [p for p in site.leftovers() if Path(p).name in _names_of(STREAMS)]
    tokens = {s: site.observer.token(s) for s in STREAMS}
    restarted = time.monotonic()
    site.start_up()
    fault = Fault("site_crash", "everything", restarted, end=restarted)
    deadline = restarted + 30
    backs = {}
    while time.monotonic() < deadline and len(backs) < len(STREAMS):
        for s in STREAMS:
            if s not in backs and (back := site.observer.back_after(s, restarted, tokens[s])):
                backs[s] = back
        time.sleep(0.1)
    stale = [p for p in left if p in site.leftovers() and not _has_live_writer(site, p)]
    fault.back = max(backs.values()) if len(backs) == len(STREAMS) else None
    return {"left_by_kill": left, "still_stale": stale, "fault": fault}


def _names_of(streams) -> set[str]:
    """The file names a producer of each stream makes: its ring and its socket."""
    return {f"framebus.{s}" for s in streams} | {f"{s}.sock" for s in streams}


def _has_live_writer(site: Site, path: str) -> bool:
    """Whether a leftover (now) belongs to a running producer: a new one of the same name."""
    from framebus.shm.layout import Header

    stream = Path(path).name.removeprefix("framebus.").removesuffix(".sock")
    try:
        data = (site.a.shm / f"framebus.{stream}").read_bytes()
        return os.path.exists(f"/proc/{Header.unpack(data, len(data)).writer_pid}")
    except Exception:  # noqa: BLE001 - no ring, or not a ring: no producer of it runs
        return False


def soak(seconds: float, seed: int, work: Path, shm_size: str, live: Live | None) -> dict:
    with intruder.second_user() as other_user:
        return _soak(seconds, seed, work, shm_size, live, other_user)


def _soak(seconds: float, seed: int, work: Path, shm_size: str, live: Live | None,
          other_user: tuple[int, int]) -> dict:
    site = Site(work, shm_size, seed)
    sampler = Sampler(site)
    report: dict = {"seconds": seconds, "seed": seed, "logs": str(site.logs)}
    try:
        log.info("starting the site in %s", work)
        site.start()
        site.wait_ready()
        sampler.start()
        start = time.monotonic()
        chaos = Chaos(site, seed, deadline=start + seconds, second_phase_at=start + 0.4 * seconds,
                      other_user=other_user)

        def progress(fault: Fault) -> None:
            who, worst = fault.worst
            log.info("%5.0f s  %-15s %-14s back %-6s readers %-6s%s",
                     time.monotonic() - start, fault.kind, fault.target,
                     "-" if fault.back is None else f"{fault.back:.2f}",
                     "never" if worst is None else f"{worst:.2f}",
                     "  BROKEN: " + "; ".join(fault.broken) if fault.broken else "")
            if live is not None:
                live.update(progress_table(site, chaos, start, seconds))

        chaos.run(progress)
        second_phase = max(chaos.second_phase_at, start) + SETTLE
        report["processes"] = sampler.judged(second_phase)
        sampler.stopping.set()
        log.info("the whole site SIGKILLed and started again")
        crash = crash_and_restart(site)
        crash["fault"].limit = (crash["fault"].back or BACK_WITHIN) + RESUME_WITHIN
        chaos._settle(crash["fault"])
        report["crash"] = {"left_by_kill": crash["left_by_kill"],
                           "still_stale": crash["still_stale"], "back": crash["fault"].back,
                           "worst": crash["fault"].worst}
        report["faults"] = [*chaos.faults, crash["fault"]]
        report["fuzz"] = chaos.fuzz
        report["intrusions"] = chaos.intrusions
        report["streams"] = stream_rows(site)
        report["restarts"] = restarts(site)
        log.info("stopping the site")
        for agent in site.agents():
            agent.stop()
        report["streams"] = stream_rows(site)  # with the readers' last words
        report["readers"] = reader_rows(site)
        report["up_exit"] = site.stop_up()
        site.camera.close()
        report["leftovers"] = site.leftovers()
        report["logs_counts"] = log_counts(site)
        report["tracebacks"] = tracebacks(site)
        report["reader_crashes"] = {c.name: c.crashes for c in site.consumers.values()
                                    if c.crashes}
    finally:
        sampler.stopping.set()
        site.close()
    return report


def reader_rows(site: Site) -> list[dict]:
    return [{"reader": c.name, "stream": c.plan.stream, "host": c.plan.host,
             **{key: c.total(key) for key in c.COUNTS}, "restarts": c.restarts,
             "crashes": c.crashes, "longest_gap": c.longest_gap(),
             "bad_examples": c.bad_examples[:5]} for c in site.consumers.values()]


def stream_rows(site: Site) -> list[dict]:
    rows = []
    for stream in (*STREAMS, "liar"):
        readers = [c for c in site.consumers.values() if c.plan.stream == stream]
        published = (site.liar.latest.get("published", 0) if stream == "liar"
                     else site.observer.published(stream))
        rows.append({
            "stream": stream, "published": published,
            "readers": len(readers),
            **{key: sum(c.total(key) for c in readers) for key in
               ("good", "bad", "overwritten", "dropped", "rejected")},
            "longest_gap": max((c.longest_gap() for c in readers), default=0.0),
            "bad_examples": [e for c in readers for e in c.bad_examples][:5],
        })
    if site.liar is not None:
        rows[-1]["lies"] = site.liar.latest.get("lies", 0)
    return rows


def restarts(site: Site) -> dict[str, int]:
    counts: dict[str, int] = {}
    for line in site.up_log.read_text(errors="replace").splitlines():
        died = re.search(r"framebus\.supervisor: ([\w.-]+): died", line)
        if died:
            counts[died.group(1)] = counts.get(died.group(1), 0) + 1
    for consumer in site.consumers.values():
        if consumer.restarts:
            counts[consumer.name] = consumer.restarts
    return counts


def progress_table(site: Site, chaos: Chaos, start: float, seconds: float) -> Table:
    table = Table(title=f"framebus soak: {time.monotonic() - start:.0f} / {seconds:.0f} s, "
                        f"{len(chaos.faults)} faults, "
                        f"phase {'2' if chaos.second_phase else '1'}", box=None)
    for col in ("reader", "frames", "bad", "lapped", "longest gap"):
        table.add_column(col, justify="right")
    for c in site.consumers.values():
        table.add_row(c.name, f"{c.total('good'):,}", str(c.total("bad")),
                      str(c.total("overwritten")), f"{c.longest_gap():.2f} s")
    return table
