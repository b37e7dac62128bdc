"""The soak's verdict: every promise framebus makes, held or not, with its evidence, from
the report of a run (run.py); the report as tables on the terminal, as JSON and as
Markdown for the README."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from .chaos import Fault

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
        ("another Unix user reads, replaces, fakes and forgets nothing",
         *_intrusions(report, held(("intruder",)))),
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


def _intrusions(report: dict, verdict: tuple[bool, str]) -> tuple[bool, str]:
    """The intruder faults' verdict, with the attempts' totals as its evidence."""
    tried = report.get("intrusions", {})
    if not tried.get("tried"):
        return False, "the intruder never ran"
    held, why = verdict
    return held and not tried["accepted"], (
        f"{tried['tried']:,} attempts, {tried['refused']:,} refused, "
        f"{tried['accepted']} got through" + ("" if held else f": {why}"))


# -- tables ------------------------------------------------------------------------------------

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
