"""The decode benchmark's throughput runs: every system decoding the file as fast as it can,
interleaved."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from statistics import median

from bench.decode.children import counting_subscriber, opencv_process, pyav_process
from bench.decode.crew import Bench, Crew
from bench.decode.settings import MEASURED_PASSES, STARTUP_TIMEOUT, THROUGHPUT_SLOTS, err
from bench.decode.video import Video


@dataclass(frozen=True)
class System:
    key: str
    label: str
    how: str


def throughput_systems(formats: list[str]) -> list[System]:
    systems = [
        System("pyav-decode", "PyAV, decode only", "container.decode(), threads AUTO, no "
               "conversion (reference)"),
        System("pyav-bgr24", "PyAV + to_ndarray", 'decode, threads AUTO, then '
               'frame.to_ndarray(format="bgr24")'),
        System("opencv", "OpenCV", "cv2.VideoCapture(file).read()"),
    ]
    systems += [System(f"framebus-{fmt}", f"framebus {fmt}",
                       f"framebus decode --fast --format {fmt} --slots {THROUGHPUT_SLOTS} "
                       "→ 1 subscriber, mode all") for fmt in formats]
    return systems


def measure_once(bench: Bench, mp, video: Video, system: System, index: int) -> dict:
    """One run of one system, in processes of its own."""
    with Crew(bench, mp, lifetime=STARTUP_TIMEOUT + 120) as crew:
        if not system.key.startswith("framebus-"):
            target, args = (opencv_process, ()) if system.key == "opencv" else \
                (pyav_process, (system.key == "pyav-bgr24",))
            crew.spawn(target, system.key, str(video.path), *args)
            return crew.collect("result", 1, STARTUP_TIMEOUT + 120)[system.key]
        fmt = system.key.split("-", 1)[1]
        name = f"tp-{fmt}-{index}"
        # The subscriber first: it waits for its producer.
        crew.spawn(counting_subscriber, "subscriber", name, video.frames, crew.stop,
                   crew.deadline, os.getpid())
        crew.collect("ready", 1, STARTUP_TIMEOUT)
        crew.decode(video, name, "--format", fmt, "--fast", "--loop",
                    "--slots", str(THROUGHPUT_SLOTS))
        # Even at 20 fps, the passes before the window and the window fit in this.
        timeout = STARTUP_TIMEOUT + (MEASURED_PASSES + 2) * video.frames / 20
        result = crew.collect("result", 1, timeout)["subscriber"]
        return {**result, "fps_delivered": result["received"] / result["seconds"]}


@dataclass
class ThroughputRow:
    system: System
    runs: list[dict] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def fps(self) -> list[float]:
        return [r["frames"] / r["seconds"] for r in self.runs]

    @property
    def median(self) -> float | None:
        return median(self.fps) if self.runs else None


def run_throughput(bench: Bench, mp, video: Video, systems: list[System],
                   runs: int) -> list[ThroughputRow]:
    """Every system --runs times, interleaved, so that a burst of other work spoils one
    run of each rather than every run of one."""
    rows = {s.key: ThroughputRow(s) for s in systems}
    total, done, started = runs * len(systems), 0, time.monotonic()
    for index in range(runs):
        for system in systems:
            done += 1
            err.print(f"  [{done:2}/{total}] {system.label}, run {index + 1} ...", end="",
                      highlight=False)
            try:
                result = measure_once(bench, mp, video, system, index)
            except RuntimeError as exc:
                rows[system.key].errors.append(str(exc))
                err.print(f" [red]failed[/]\n{exc}", highlight=False)
                continue
            rows[system.key].runs.append(result)
            err.print(f" {result['frames'] / result['seconds']:.1f} fps, CPU "
                      f"{result['cpu_ms']:.2f} ms/frame, others {result['others']:.2f} cores, "
                      f"load {os.getloadavg()[0]:.2f}{_joined(result)}", highlight=False)
    err.print(f"  throughput done in {time.monotonic() - started:.0f} s", highlight=False)
    return list(rows.values())


def _joined(result: dict) -> str:
    if "joined" not in result:
        return ""
    return (f" (subscriber: joined at frame {result['joined']}, timed frames "
            f"{result['first_seen']}..{result['end']}, {result['helper_ms']:.2f} ms CPU/frame)")
