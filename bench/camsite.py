"""The parts of bench/cameras.py's site: the clip, the processes, the CPU, the check of the
recordings. See bench/cameras.py for what the site is."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import av

from framebus.testing import media, nals
from framebus.testing.rtsp import RtspServer

CACHE = Path(tempfile.gettempdir()) / "framebus-bench-cameras"
TICK = os.sysconf("SC_CLK_TCK")
CLIP_SECONDS = 10


def clip() -> Path:
    """A real 1080p25 H.264 clip, GOP 1 s, encoded once with libx264 and cached."""
    path = CACHE / f"clip1080p25-{CLIP_SECONDS}s.mp4"
    if not path.exists():
        CACHE.mkdir(exist_ok=True)
        tmp = path.with_suffix(".tmp.mp4")
        media.encode(tmp, CLIP_SECONDS * 25, 1920, 1080, fps=25, gop=25)
        tmp.rename(path)
    return path


def long_clip(short: Path, seconds: int) -> Path:
    """*short* played over and over for *seconds*, as one MP4: its packets copied with
    shifted timestamps (no encoding), so the RTSP server loops it without a seek."""
    times = -(-seconds // CLIP_SECONDS)
    path = CACHE / f"{short.stem}-x{times}.mp4"
    if path.exists():
        return path
    tmp = path.with_suffix(".tmp.mp4")
    with av.open(str(short)) as inp, av.open(str(tmp), "w") as out:
        stream = inp.streams.video[0]
        copy = out.add_stream_from_template(stream)
        packets = [p for p in inp.demux(stream) if p.size]
        span = CLIP_SECONDS * int(1 / stream.time_base)
        for k in range(times):
            for p in packets:
                q = av.Packet(bytes(p))
                q.pts, q.dts = p.pts + k * span, p.dts + k * span
                q.duration, q.is_keyframe, q.time_base = p.duration, p.is_keyframe, p.time_base
                q.stream = copy
                out.mux(q)
    tmp.rename(path)
    return path


def cpu(pid: int) -> float:
    """CPU seconds of process *pid* so far (user + system), 0 once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICK


@dataclass
class Site:
    """The processes of a run, by group, all stopped by close() whatever happened."""

    env: dict
    groups: dict[str, list] = field(default_factory=dict)
    server: RtspServer | None = None

    def framebus(self, group: str, *args: str, stdout=subprocess.DEVNULL) -> subprocess.Popen:
        return self.start(group, "-m", "framebus", *args, stdout=stdout)

    def start(self, group: str, *args: str, stdout=subprocess.DEVNULL) -> subprocess.Popen:
        err = tempfile.TemporaryFile()  # noqa: SIM115 (a file: never fills like a pipe)
        proc = subprocess.Popen([sys.executable, *args], env=self.env, stdout=stdout,
                                stderr=err, start_new_session=True)
        proc.err = err  # type: ignore[attr-defined]
        self.groups.setdefault(group, []).append(proc)
        return proc

    def pids(self, group: str) -> list[int]:
        if group == "server":
            return [self.server.proc.pid] if self.server and self.server.proc else []
        return [p.pid for p in self.groups.get(group, [])]

    def measure(self, seconds: float, groups: list[str]) -> dict[str, float]:
        """Each group's CPU over *seconds* of wall time, in cores."""
        before = {g: sum(cpu(p) for p in self.pids(g)) for g in groups}
        t0 = time.monotonic()
        time.sleep(seconds)
        wall = time.monotonic() - t0
        return {g: (sum(cpu(p) for p in self.pids(g)) - before[g]) / wall for g in groups}

    def stop(self, group: str, sig: int = signal.SIGINT) -> None:
        for proc in self.groups.get(group, []):
            _stop(proc, sig)

    def stderr(self, proc: subprocess.Popen) -> str:
        err = proc.err  # type: ignore[attr-defined]
        err.seek(0)
        return err.read().decode(errors="replace")

    def close(self) -> None:
        for group in reversed(list(self.groups)):
            self.stop(group)
        for procs in self.groups.values():
            for proc in procs:
                proc.err.close()  # type: ignore[attr-defined]
        if self.server is not None:
            self.server.close()


def _stop(proc: subprocess.Popen, sig: int) -> None:
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, sig)
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        except ProcessLookupError:
            pass


def result(proc: subprocess.Popen, timeout: float = 60) -> dict:
    out, _ = proc.communicate(timeout=timeout)
    try:
        return json.loads(out or b"{}")
    except ValueError:
        return {}


# -- checking the recordings ----------------------------------------------------------------


def slices(path: Path) -> list[list[bytes]]:
    """The slices of each picture of a file."""
    with av.open(str(path)) as c:
        return [nals.slices(bytes(p)) for p in c.demux(c.streams.video[0]) if p.size]


@dataclass
class Check:
    pictures: int = 0
    files: int = 0
    gaps: int = 0  # pictures of the clip missing between two consecutive ones recorded
    wrong: int = 0  # pictures that are not the clip's, or out of order

    @property
    def ok(self) -> bool:
        return self.pictures > 0 and not self.gaps and not self.wrong


def verify(files: list[Path], source: list[list[bytes]]) -> Check:
    """Every picture of *files*, in order, against the clip's, which loops: each the
    clip's next picture bit for bit (its slices), across file boundaries too."""
    index = {tuple(s): i for i, s in enumerate(source)}
    check = Check(files=len(files))
    last = None
    for f in files:
        for picture in slices(f):
            i = index.get(tuple(picture))
            check.pictures += 1
            if i is None:
                check.wrong += 1
                continue
            if last is not None and i != (last + 1) % len(source):
                check.gaps += (i - last - 1) % len(source) or 1
            last = i
    return check


def recordings(directory: Path) -> list[Path]:
    """A stream's files in the order they were written (names from %H%M%S, then -2...)."""
    return sorted(directory.glob("*.mp4"), key=lambda p: p.stat().st_mtime)
