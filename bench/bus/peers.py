"""Issue 11 §1's targets: framebus against iceoryx2's Python binding and the floor, a bare
POSIX semaphore wake-up between two processes (bench/wakeup.py), paced like the cameras."""

from __future__ import annotations

import numpy as np

from bench.bus.cell import PACED_FPS, subscribers
from bench.bus.report import Row, Target

HD, VGA, UHD = "1920x1080", "640x480", "3840x2160"


def measure_floor(seconds: float) -> tuple[float, float] | None:
    """The semaphore wake-up's latency p50, p99 (ms), one a frame at PACED_FPS for
    *seconds*; None where posix_ipc's semaphores cannot run."""
    from bench import wakeup

    try:
        delays = wakeup.run("semaphore", max(30, int(seconds * PACED_FPS)), 1.0 / PACED_FPS)
    except Exception:  # noqa: BLE001 - reported as "not measured"
        return None
    p50, p99 = np.percentile(delays, [50, 99])
    return float(p50) / 1000, float(p99) / 1000


def issue11_targets(rows: list[Row], floor: tuple[float, float] | None) -> list[Target]:
    """Each target of issue 11 §1, from one run."""
    got = {(r.cell.system, r.cell.size, r.cell.subs): r for r in rows if not r.error}
    fb, ice = got.get(("framebus", HD, 1)), got.get(("iceoryx2", HD, 1))
    found: list[Target] = []
    for i, which in enumerate(("p50", "p99")):
        mine = fb.paced[i] if fb and fb.paced else None
        peer = ice.paced[i] if ice and ice.paced else None
        found.append(Target(f"1080p paced latency {which}, framebus / iceoryx2",
                            _ratio(mine, peer), 1.0, at_most=True, detail=_ms(mine, peer)))
        bottom = floor[i] if floor else None
        found.append(Target(f"1080p paced latency {which}, framebus / the semaphore floor",
                            _ratio(mine, bottom), 2.0, at_most=True, detail=_ms(mine, bottom)))
    mine_cpu, peer_cpu = (fb.cpu_ms if fb else None), (ice.cpu_ms if ice else None)
    found.append(Target("1080p paced, consumer CPU per frame, framebus / iceoryx2",
                        _ratio(mine_cpu, peer_cpu), 1.0, at_most=True,
                        detail=_ms(mine_cpu, peer_cpu, 3)))
    for subs in sorted({r.cell.subs for r in rows}):
        a, b = got.get(("framebus", HD, subs)), got.get(("iceoryx2", HD, subs))
        mine, peer = (a.fps if a else None), (b.fps if b else None)
        found.append(Target(f"1080p flat out, {subscribers(subs)}: fps/sub, framebus / iceoryx2",
                            _ratio(mine, peer), 1.0,
                            detail="" if mine is None or peer is None
                            else f"{mine:,.0f} vs {peer:,.0f} fps"))
    for subs in sorted({r.cell.subs for r in rows}):
        big, small = got.get(("framebus", UHD, subs)), got.get(("framebus", VGA, subs))
        mine = big.paced[0] if big and big.paced else None
        peer = small.paced[0] if small and small.paced else None
        found.append(Target(f"framebus, {subscribers(subs)}: paced p50 latency, 4K / 640x480",
                            _ratio(mine, peer), 1.2, at_most=True, detail=_ms(mine, peer)))
    return found


def _ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0 or np.isnan(a) or np.isnan(b):
        return None
    return a / b


def _ms(a: float | None, b: float | None, digits: int = 2) -> str:
    return "" if a is None or b is None else f"{a:.{digits}f} ms vs {b:.{digits}f} ms"
