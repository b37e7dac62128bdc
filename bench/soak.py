"""Soak and chaos: a real site runs under faults for a while, then is judged on its promises.

    sudo .venv/bin/python bench/soak.py --seconds 120            # the short run (CI runs it)
    sudo .venv/bin/python bench/soak.py --seconds 1800 --json soak.json

A whole site runs in a network namespace of its own (bench/soak_site.py): `framebus up`
with the broker, the relay and four decoders (test pattern, a looping H.264 file twice,
a GStreamer RTSP camera), a producer that lies in its descriptors, nine readers that check
every frame by content, two of them on a second host through the relay. For --seconds, a
seeded chaos loop (bench/soak_chaos.py) kills, stops and starves them and feeds the broker
and the relay garbage. Then the whole site is SIGKILLed and started again, and finally
stopped cleanly. The table at the end says, per promise, whether it held; the exit status
is 1 if one did not, 2 if the soak could not run here (it needs root, for the namespaces,
and GStreamer's RTSP server: `make test` installs it).
"""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import click
from rich.console import Console
from rich.live import Live
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from netns import netns_available  # noqa: E402
from rtsp import rtsp_available  # noqa: E402
from soak_chaos import BACK_WITHIN, RESUME_WITHIN, Chaos, Fault  # noqa: E402
from soak_site import STREAMS, Site, memory  # noqa: E402

log = logging.getLogger("soak")
console = Console(stderr=True)

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
    site = Site(work, shm_size, seed)
    sampler = Sampler(site)
    report: dict = {"seconds": seconds, "seed": seed, "logs": str(site.logs)}
    try:
        log.info("starting the site in %s", work)
        site.start()
        site.wait_ready()
        sampler.start()
        start = time.monotonic()
        chaos = Chaos(site, seed, deadline=start + seconds, second_phase_at=start + 0.4 * seconds)

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


# -- judging -----------------------------------------------------------------------------------

def promises(report: dict) -> list[tuple[str, bool, str]]:
    faults: list[Fault] = report["faults"]

    def held(kinds: tuple[str, ...]) -> tuple[bool, str]:
        mine = [f for f in faults if f.kind in kinds]
        broken = [f"{f.kind} {f.target}: {'; '.join(f.broken)}" for f in mine if f.broken]
        return not broken, "; ".join(broken[:3]) or f"{len(mine)} faults"

    bad = sum(r["bad"] for r in report["streams"])
    examples = [e for r in report["streams"] for e in r["bad_examples"]]
    not_flat = [f"{p['role']} +{p['growth']:.1f} MiB, fds {p['fds_start']}->{p['fds_end']}"
                for p in report["processes"] if not p["flat"]]
    crash = report["crash"]
    return [
        ("no torn, mixed or wrong frame reached a reader", bad == 0,
         f"{bad} bad: {'; '.join(examples[:3])}" if bad else
         f"{sum(r['good'] for r in report['streams']):,} frames checked"),
        ("killed decoders, broker and relay back within 5 s, readers within 2 s of that",
         *held(("decoder_kill", "broker_kill", "relay_kill", "site_crash"))),
        ("stopped processes, a cut wire, a dead camera: readers resume on their own",
         *held(("decoder_stop", "broker_stop", "relay_stop", "consumer_stop", "consumer_kill",
                "link_cut", "camera_restart"))),
        ("malformed input refused with a reason; services never stall",
         *held(("fuzz_broker", "fuzz_relay"))),
        ("full /dev/shm: a clear error naming the room needed; nothing else breaks",
         *held(("shm_full",))),
        ("memory and descriptors of long-lived processes flat", not not_flat and bool(
            report["processes"]), "; ".join(not_flat) or
         f"{len(report['processes'])} processes over "
         f"{max((p['minutes'] for p in report['processes']), default=0):.1f} min"),
        ("nothing left in /dev/shm or the runtime dir after a clean shutdown",
         not report["leftovers"], ", ".join(report["leftovers"]) or "none left"),
        ("what SIGKILL left is reclaimed at the next start",
         bool(crash["left_by_kill"]) and not crash["still_stale"],
         f"{len(crash['left_by_kill'])} left by the kill, "
         f"{len(crash['still_stale'])} still there after the restart"),
        ("no unexpected exception in any log, no reader died", not report["tracebacks"]
         and not report["reader_crashes"], "; ".join(report["tracebacks"][:3]) or "none"),
    ]


# -- tables ------------------------------------------------------------------------------------

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


def print_report(report: dict, held: list[tuple[str, bool, str]]) -> None:
    out = Console(width=max(Console().width, 150))  # whole rows, also in a CI log
    streams = Table(title="Streams", box=None)
    for col in ("stream", "published", "readers", "delivered (all readers)", "bad",
                "lapped (refused)", "dropped", "lies rejected", "longest gap"):
        streams.add_column(col, justify="right")
    for r in report["streams"]:
        streams.add_row(r["stream"], f"{r['published']:,}", str(r["readers"]), f"{r['good']:,}",
                        str(r["bad"]),
                        f"{r['overwritten']:,}", f"{r['dropped']:,}",
                        f"{r['rejected']:,} of {r.get('lies', 0):,}" if "lies" in r else "-",
                        f"{r['longest_gap']:.2f} s")
    faults = Table(title="Faults", box=None)
    for col in ("fault", "count", "back (max)", "readers again (max)", "limit", "broken"):
        faults.add_column(col, justify="right")
    by_kind: dict[str, list[Fault]] = {}
    for f in report["faults"]:
        by_kind.setdefault(f.kind, []).append(f)
    for kind, fs in by_kind.items():
        backs = [f.back for f in fs if f.back is not None]
        worsts = [f.worst[1] for f in fs]
        worst = "never" if None in worsts else f"{max(worsts):.2f} s"
        faults.add_row(kind, str(len(fs)), f"{max(backs):.2f} s" if backs else "-", worst,
                       f"{max(f.limit for f in fs):.1f} s", str(sum(bool(f.broken) for f in fs)))
    procs = Table(title="Long-lived processes (second phase)", box=None)
    for col in ("process", "minutes", "RSS start", "RSS end", "growth", "fds", "restarts",
                "warnings", "errors"):
        procs.add_column(col, justify="right")
    counts = report["logs_counts"]
    for p in report["processes"]:
        name = p["role"].removeprefix("decoder:")
        c = counts.get(name, counts.get(p["role"], {}))
        procs.add_row(p["role"], f"{p['minutes']:.1f}", f"{p['rss_start']:.1f} MiB",
                      f"{p['rss_end']:.1f} MiB", f"{p['growth']:+.1f} MiB",
                      f"{p['fds_start']} -> {p['fds_end']}",
                      str(report["restarts"].get(name, 0)), str(c.get("warnings", 0)),
                      str(c.get("errors", 0)))
    fuzz = Table(title="Malformed input", box=None)
    for col in ("service", "sent", "refused", "cut", "answered", "held (a registered stream)",
                "unanswered", "garbled reply"):
        fuzz.add_column(col, justify="right")
    for service, t in report["fuzz"].items():
        fuzz.add_row(service, *(f"{t.get(k, 0):,}" for k in
                                ("sent", "refused", "cut", "answered", "held", "silent",
                                 "garbled")))
    verdict = Table(title="Promises", box=None)
    for col in ("promise", "held", "evidence"):
        verdict.add_column(col)
    for promise, ok, evidence in held:
        verdict.add_row(promise, "[green]yes[/]" if ok else "[red]NO[/]", evidence)
    for table in (streams, faults, procs, fuzz, verdict):
        out.print(table)
        out.print()


def to_json(report: dict, held) -> dict:
    def fault(f: Fault) -> dict:
        return {"kind": f.kind, "target": f.target, "back": f.back, "limit": f.limit,
                "worst": f.worst, "broken": f.broken, "detail": f.detail,
                "recovery": f.recovery}

    return {**report, "faults": [fault(f) for f in report["faults"]],
            "crash": {**report["crash"], "worst": list(report["crash"]["worst"])},
            "promises": [{"promise": p, "held": ok, "evidence": e} for p, ok, e in held]}


def markdown(data: dict) -> str:
    """The report (as written with --json) as Markdown tables, for the README."""
    lines = ["| stream | published | readers | delivered (all readers) | bad | lapped, refused | "
             "longest gap |", "|---|---:|---:|---:|---:|---:|---:|"]
    for r in data["streams"]:
        lies = f" (and {r['rejected']:,} of {r['lies']:,} lies)" if "lies" in r else ""
        lines.append(f"| {r['stream']} | {r['published']:,} | {r['readers']} | {r['good']:,} | "
                     f"{r['bad']} | {r['overwritten']:,}{lies} | {r['longest_gap']:.2f} s |")
    lines += ["", "| fault | count | back, max | readers have frames again, max | limit | "
                  "broken |", "|---|---:|---:|---:|---:|---:|"]
    kinds: dict[str, list[dict]] = {}
    for f in sorted(data["faults"], key=lambda f: f["kind"]):
        kinds.setdefault(f["kind"], []).append(f)
    for kind, fs in kinds.items():
        backs = [f["back"] for f in fs if f["back"] is not None]
        worsts = [f["worst"][1] for f in fs]
        worst = "never" if None in worsts else f"{max(worsts):.2f} s"
        lines.append(f"| {kind} | {len(fs)} | {f'{max(backs):.2f} s' if backs else '-'} | "
                     f"{worst} | {max(f['limit'] for f in fs):.1f} s | "
                     f"{sum(bool(f['broken']) for f in fs)} |")
    lines += ["", "| process (alive all through phase 2) | minutes | RSS start | RSS end | growth "
                  "| fds |", "|---|---:|---:|---:|---:|---:|"]
    for p in data["processes"]:
        lines.append(f"| {p['role']} | {p['minutes']:.1f} | {p['rss_start']:.1f} MiB | "
                     f"{p['rss_end']:.1f} MiB | {p['growth']:+.1f} MiB | "
                     f"{p['fds_start']} -> {p['fds_end']} |")
    lines += ["", "| service | fuzzed messages | refused | cut (oversized) | answered | held | "
                  "unanswered |", "|---|---:|---:|---:|---:|---:|---:|"]
    for service, t in data["fuzz"].items():
        lines.append(f"| {service} | " + " | ".join(
            f"{t.get(k, 0):,}" for k in ("sent", "refused", "cut", "answered", "held")) +
            f" | {t.get('silent', 0) + t.get('garbled', 0):,} |")
    lines += ["", "| promise | held | evidence |", "|---|---|---|"]
    lines += [f"| {p['promise']} | {'yes' if p['held'] else '**no**'} | {p['evidence']} |"
              for p in data["promises"]]
    return "\n".join(lines)


@click.command()
@click.option("--seconds", type=click.FloatRange(min=30), default=120, show_default=True,
              help="How long the chaos runs (setup and the final crash come on top).")
@click.option("--seed", type=int, default=1, show_default=True,
              help="Seeds the chaos and the fuzzers: the same seed, the same faults.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), default=None,
              help="Also write the whole report here.")
@click.option("--work", type=click.Path(file_okay=False), default=None,
              help="Where the site's files and logs go (default: a new temporary directory).")
@click.option("--shm-size", default="64m", show_default=True,
              help="The size of the site's own /dev/shm (tmpfs size=).")
@click.option("--markdown", "render", type=click.Path(exists=True, dir_okay=False),
              default=None, help="Run nothing: print the report of an earlier --json as "
                                 "Markdown tables.")
def main(seconds: float, seed: int, json_path: str | None, work: str | None,
         shm_size: str, render: str | None) -> None:
    """Run framebus under faults and garbage for SECONDS; judge it on every promise."""
    if render:
        print(markdown(json.loads(Path(render).read_text())))
        return
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s",
                        datefmt="%H:%M:%S", stream=sys.stderr)
    for ok, why in (netns_available(), rtsp_available()):
        if not ok:
            console.print(f"[red]the soak cannot run here:[/] {why}")
            sys.exit(2)
    work_dir = Path(work) if work else Path(tempfile.mkdtemp(prefix="framebus-soak-"))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    live = Live(console=console, refresh_per_second=2) if console.is_terminal else None
    if live is not None:
        live.start()
    try:
        report = soak(seconds, seed, work_dir, shm_size, live)
    finally:
        if live is not None:
            live.stop()
    held = promises(report)
    print_report(report, held)
    if json_path:
        Path(json_path).write_text(json.dumps(to_json(report, held), indent=1, default=str))
    broken = [p for p, ok, _ in held if not ok]
    console.print(f"logs: {report['logs']}")
    sys.exit(1 if broken else 0)


if __name__ == "__main__":
    main()
