"""bench/cameras: issue 12's site of cameras on this machine, in one run.

    python -m bench.cameras               # 32 cameras, 30 s window (about 4 minutes)
    python -m bench.cameras --quick       # 6 cameras, 12 s window (about 2 minutes)

The site: a real GStreamer RTSP server (framebus/testing/rtsp_server.py, Debian's python3)
serves N mounts on loopback, each a pre-encoded real 1080p25 H.264 clip (GOP 1 s),
looped, with no encoding (its CPU is measured and printed apart from framebus's). N
`framebus decode` workers read one mount each: N-2 with --decode keyframes (key-frame
pixels, 1 a second, to one reader of them all), 2 with --decode demand (pixels at full
rate for a reader that comes and goes: it must get its first picture within a GOP and
the decoder must stop decoding once it left). One `framebus record 'cam*'` process
records every camera from packets into 10 s segments. Afterwards every recording is
checked picture by picture against the clip: every picture present, in order, each
bit-identical to the clip's (its coded slices: RTSP and MP4 frame them differently).

Beside it: a few cameras with --decode always (today's behaviour), how many cameras the
2 cores would hold so (extrapolated from those few, and said so), and the re-encoding
recorder against the packet recorder on one of them, both measured in the same window.
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
import time
from pathlib import Path

import click

from bench.camsite import CLIP_SECONDS, Site, clip, long_clip, recordings, result, slices, verify
from bench.common import sweep_rings
from framebus.discovery import BrokerClient
from framebus.errors import FramebusError
from framebus.testing.rtsp import RtspServer, rtsp_available

ALWAYS = 3  # cameras of the --decode always side run
PACKETS_ONLY = 3  # cameras of --decode demand with no reader: packets only, in the same run
DEMAND = 2


def mark(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def decoders(site: Site, server: RtspServer, names: list[str], first: int, mode: str,
             group: str) -> None:
    for i, name in enumerate(names):
        site.framebus(group, "decode", server.urls[first + i], "--name", name, "--decode",
                      mode, "--format", "yuv420p")
        time.sleep(0.3)  # started together, their imports starve the ones already reading


def wait_for_packets(names: list[str], timeout: float = 90) -> None:
    """Until the broker lists a packet stream of every name (the decoders are up)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with BrokerClient(None, timeout=2.0) as client:
                listed = {s.name for s in client.streams(kind="packets") if s.alive}
        except FramebusError:
            listed = set()
        if set(names) <= listed:
            return
        time.sleep(1)


def recorder_losses(said: str) -> dict[str, int]:
    """Per stream, the packets the recorder says it lost (its summary lines)."""
    found = re.findall(r"^(\S+): \d+ packets in \d+ file\(s\), (\d+) lost$", said, re.M)
    return {name: int(n) for name, n in found}


def main_site(site: Site, server: RtspServer, n: int, seconds: float, out: Path) -> dict:
    """The N cameras: figures, recordings checked, the readers' results."""
    names = [f"cam{i}" for i in range(n)]
    keyed, demanded = names[:n - DEMAND], names[n - DEMAND:]
    decoders(site, server, keyed, 0, "keyframes", "keyframes")
    decoders(site, server, demanded, n - DEMAND, "demand", "demand")
    wait_for_packets(names)
    time.sleep(5)  # the machine settles after the decoders' start
    site.framebus("recorder", "record", "cam*", str(out / "{stream}" / "%H%M%S.mp4"),
                  "--segment", "10s")
    time.sleep(8)  # the recorder has found every stream and started at a key frame
    keys = site.start("readers", "-m", "bench.camreaders", "keys", "--seconds",
                      str(seconds), *keyed, stdout=subprocess.PIPE)
    half = max(5.0, seconds / 4)
    demand = [site.start("readers", "-m", "bench.camreaders", "demand", "--cycles", "2",
                         "--on", str(half), "--off", str(half), name, stdout=subprocess.PIPE)
              for name in demanded]
    cpu = site.measure(seconds, ["keyframes", "demand", "recorder", "broker", "server",
                                 "readers"])
    figures = {"cpu": cpu, "keys": result(keys), "demand": [result(d) for d in demand]}
    time.sleep(1)
    site.stop("recorder")
    figures["recorder_said"] = said = site.stderr(site.groups["recorder"][0])
    figures["lost"] = recorder_losses(said)
    site.stop("keyframes")
    site.stop("demand")
    source = slices(clip())
    figures["checks"] = {name: verify(recordings(out / name), source) for name in names}
    return figures


def always_site(site: Site, server: RtspServer, n: int, seconds: float, out: Path) -> dict:
    """ALWAYS cameras decoded in full, one of them recorded twice: re-encoding, and from
    packets; beside them PACKETS_ONLY cameras that only publish packets."""
    names = [f"full{i}" for i in range(ALWAYS)]
    decoders(site, server, names, n, "always", "always")
    decoders(site, server, [f"bare{i}" for i in range(PACKETS_ONLY)], n + ALWAYS, "demand",
             "packets")
    time.sleep(6)
    site.framebus("reencode", "record", names[0], str(out / "reencoded.mp4"), "--mode",
                  "reencode")
    site.framebus("copy", "record", names[0], str(out / "copied.mp4"), "--mode", "packets")
    time.sleep(5)
    cpu: dict = site.measure(seconds, ["always", "reencode", "copy", "packets"])
    for group in ("reencode", "copy", "always", "packets"):
        site.stop(group)
    said = site.stderr(site.groups["reencode"][0])
    if "re-encoding mode" not in said or cpu["reencode"] < cpu["copy"]:
        cpu["said"] = said
    return cpu


@click.command()
@click.option("--cameras", type=click.IntRange(DEMAND + 1, 128), default=32,
              show_default=True)
@click.option("--seconds", type=float, default=30.0, show_default=True,
              help="The measured window of each part.")
@click.option("--quick", is_flag=True, help="6 cameras, 12 s windows.")
def main(cameras: int, seconds: float, quick: bool) -> None:
    if quick:
        cameras, seconds = 6, 12.0
    ok, why = rtsp_available()
    if not ok:
        raise click.ClickException(f"no GStreamer RTSP server here: {why}")
    started = time.monotonic()
    # Long enough for the whole run, so that no mount reaches its end meanwhile.
    served = long_clip(clip(), int(120 + 3 * seconds + cameras))
    env = dict(os.environ, FRAMEBUS_SHM_PREFIX=f"framebus-bench{os.getpid()}")
    with tempfile.TemporaryDirectory(prefix="framebus-cameras") as tmp:
        env["FRAMEBUS_RUNTIME_DIR"] = tmp
        env["FRAMEBUS_BROKER"] = f"tcp://127.0.0.1:{20000 + os.getpid() % 20000}"
        site = Site(env)
        try:
            site.framebus("broker", "broker", "--bind", env["FRAMEBUS_BROKER"])
            mounts = cameras + ALWAYS + PACKETS_ONLY
            site.server = RtspServer(path="/cam", clip=served, mounts=mounts,
                                     ready_timeout=60).start()
            time.sleep(1)
            figures = main_site(site, site.server, cameras, seconds, Path(tmp) / "rec")
            full = always_site(site, site.server, cameras, seconds, Path(tmp))
        finally:
            site.close()
            sweep_rings(env["FRAMEBUS_SHM_PREFIX"])  # of a decoder that had to be killed
    report(cameras, seconds, figures, full, time.monotonic() - started)


def report(n: int, seconds: float, f: dict, full: dict, took: float) -> None:
    cpu, checks = f["cpu"], f["checks"]
    load = os.getloadavg()
    keyed = n - DEMAND
    recorder = cpu["recorder"] / n
    per_cam = cpu["keyframes"] / keyed + recorder + cpu["broker"] / n
    print(f"bench/cameras: {n} RTSP cameras (GStreamer, loopback) of a real 1080p25 H.264 "
          f"clip (GOP 1 s, {CLIP_SECONDS} s looped), {seconds:g} s windows, {os.cpu_count()} "
          f"cores, load {load[0]:.1f} {load[1]:.1f} {load[2]:.1f} after, run took {took:.0f} s")
    print()
    print("| figure | value | target | |")
    print("|---|---:|---:|---|")
    bad = [name for name, c in checks.items() if not c.ok]
    pictures = sum(c.pictures for c in checks.values())
    print(f"| cameras recorded from packets, one recorder process, verified (every picture, "
          f"in order, bit-identical) | {n - len(bad)}/{n} ({pictures} pictures, "
          f"{sum(c.files for c in checks.values())} files) | {n}/{n} | {mark(not bad)} |")
    gaps = sum(c.gaps + c.wrong for c in checks.values())
    print(f"| pictures of the clip missing or wrong in the recordings (at the source or "
          f"the recorder) | {gaps} | 0 | {mark(gaps == 0)} |")
    lost = f["lost"]
    said_all = len(lost) == n
    print(f"| packets the recorder lost (published but not recorded) | "
          f"{sum(lost.values()) if said_all else 'not said'} | 0 | "
          f"{mark(said_all and not any(lost.values()))} |")
    frames = f["keys"].get("frames", {})
    rates = [frames.get(f"cam{i}", 0) / seconds for i in range(keyed)]
    slowest = min(rates) if rates else 0.0
    print(f"| key-frame pixels to a reader, per camera ({keyed} cameras), slowest | "
          f"{slowest:.2f}/s | ~1/s | {mark(slowest >= 0.8)} |")
    print_demand(f["demand"])
    bare = full["packets"] / PACKETS_ONLY + recorder + cpu["broker"] / n
    print(f"| CPU per recorded camera, packets only: decoder publishing packets ({PACKETS_ONLY} "
          f"cameras, --decode demand, no reader) + its share of the recorder and broker | "
          f"{bare:.1%} | ≤ 2% | {mark(bare <= 0.02)} |")
    print(f"| CPU per recorded camera of the site: decoder (packets + key-frame pixels) + "
          f"its share of the recorder and broker | {per_cam:.1%} | | |")
    print(f"| of which the recorder, per camera (one process for {n}) | {recorder:.2%} | | |")
    print(f"| of which the broker, per camera | {cpu['broker'] / n:.2%} | | |")
    print(f"| demand decoders ({DEMAND}, their reader coming and going), each | "
          f"{cpu['demand'] / DEMAND:.1%} | | |")
    print(f"| RTSP server (not framebus: GStreamer, {n} cameras), per camera | "
          f"{cpu['server'] / n:.2%} | | |")
    always = full["always"] / ALWAYS
    print(f"| --decode always (today), decoder CPU per camera ({ALWAYS} cameras) | "
          f"{always:.1%} | | |")
    if always > 0:
        print(f"| cameras 2 cores hold with --decode always (extrapolated from {ALWAYS}) | "
              f"{int(2 / always)} | | |")
    ratio = full["copy"] / full["reencode"] if full["reencode"] else float("inf")
    print(f"| recorder CPU, one 1080p25 camera: re-encoding / from packets | "
          f"{full['reencode']:.1%} / {full['copy']:.2%} | | |")
    print(f"| recording cost, packets / re-encoding | {ratio:.3f} | ≤ 0.1 | "
          f"{mark(ratio <= 0.1)} |")
    for name in bad:
        print(f"{name}: {checks[name]}")
    print(f"demand readers: {f['demand']}")
    if full.get("said"):
        print(f"\nthe re-encoding recorder said:\n{full['said'][-1500:]}")
    if bad:
        print(f"\nnot verified: {', '.join(bad)}; the recorder said:\n{f['recorder_said'][-2000:]}")


def print_demand(results: list[dict]) -> None:
    firsts = [t for r in results for t in r.get("first_frame_s", [])]
    stops = [t for r in results for t in r.get("stopped_after_s", [])]
    rates = [x for r in results for x in r.get("fps", [])]
    on_ok = bool(firsts) and all(t is not None and t <= 1.0 for t in firsts)
    off_ok = bool(stops) and all(t is not None and t <= 2.0 for t in stops)
    worst_on = max((t for t in firsts if t is not None), default=float("nan"))
    worst_off = max((t for t in stops if t is not None), default=float("nan"))
    missing = "" if None not in firsts else " (some none)"
    print(f"| demand: reader's first picture after it subscribed, worst of {len(firsts)} | "
          f"{worst_on:.2f} s{missing} | ≤ 1 GOP (1 s) | {mark(on_ok)} |")
    print(f"| demand: pictures/s while the reader stays, slowest | "
          f"{min(rates, default=0):.1f} | 25 | {mark(min(rates, default=0) >= 23)} |")
    print(f"| demand: decoding off after the reader left, worst | {worst_off:.2f} s"
          f"{'' if off_ok else ' (or never)'} | ≤ 2 s | {mark(off_ok)} |")


if __name__ == "__main__":
    main()
