"""The packet path beside raw pixels, in the remote benchmark: one real decoder publishing a
1080p25 H.264 clip (pixels and packets), read over loopback through the relay by a remote
reader of raw pixels, then by one that decodes the packets itself
(``Subscriber(name, transport="tcp", codec="packets")``). Each for the same time: bytes a
second on the link, frames a second, each frame's age when the reader has it, and the
reader's CPU.

A raw frame's age runs from the pixels' commit on the producer's host (after its decode); a
decoded frame's from its packet's (before any decode): the packet path's age includes the
decode, here, in the reader.
"""

from __future__ import annotations

import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import framebus
from bench.common import verdict
from bench.remote.run import Environment
from framebus.errors import Timeout
from framebus.support.children import framebus_command
from framebus.support.children import stop as stop_child

WIDTH, HEIGHT, FPS = 1920, 1080, 25
#: Camera-like: a key frame a second, libx264 at a camera's bitrate.
CLIP_FRAMES = 100
BITRATE = "4M"
#: Target: the packet path costs the link at most this part of raw pixels' bytes a second.
MAX_SHARE = 0.01


@dataclass
class PathFigures:
    what: str
    fps: float  # frames returned
    decoded_fps: float  # frames decoded (the packet path decodes every one, returned or not)
    bytes_per_s: float
    age_ms: tuple[float, float]  # p50, p99
    cpu: float  # % of one core, the reader's process


def clip(directory: Path) -> Path:
    """A 1080p25 H.264 clip at about 4 Mbit/s with a key frame a second (made once a run)."""
    from framebus.testing.media import encode_frames, picture

    path = directory / "clip.mp4"
    pictures = (picture(i, WIDTH, HEIGHT) for i in range(CLIP_FRAMES))
    # A bit rate set overrides the CRF of encode_frames' defaults (libx264's ABR mode).
    return encode_frames(path, pictures, WIDTH, HEIGHT, FPS, FPS,
                         options={"b": BITRATE, "maxrate": BITRATE, "bufsize": BITRATE})


def measure(env: Environment, seconds: float) -> list[PathFigures]:
    """Raw pixels, then packets decoded here, from one decoder, *seconds* each."""
    env.ensure_relay()
    name = env.stream_name("packets")
    with tempfile.TemporaryDirectory(prefix="fbpackets-") as directory:
        source = clip(Path(directory))
        decoder = subprocess.Popen(framebus_command(("decode", str(source), "--name", name,
                                                     "--loop")),
                                   stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
        try:
            return [_read(name, "raw", seconds), _read(name, "packets", seconds)]
        finally:
            stop_child(decoder, 5)


def _read(name: str, codec: str, seconds: float) -> PathFigures:
    with framebus.Subscriber(name, transport="tcp", codec=codec) as sub:  # type: ignore[arg-type]
        end = time.monotonic() + 20
        while time.monotonic() < end:  # the first frame: the path is up
            try:
                sub.recv(timeout=1.0)
                break
            except Timeout:
                continue
        ages, nbytes = [], 0
        first_bytes, first_decoded = _path_figure(sub, "bytes"), _path_figure(sub, "decoded")
        cpu0, t0 = time.process_time(), time.monotonic()
        while time.monotonic() - t0 < seconds:
            try:
                frame = sub.recv(timeout=1.0)
            except Timeout:
                continue
            ages.append(frame.age * 1000)
            nbytes += frame.array.nbytes
        elapsed = time.monotonic() - t0
        cpu = 100 * (time.process_time() - cpu0) / elapsed
        decoded = len(ages)
        if codec == "packets":
            nbytes = _path_figure(sub, "bytes") - first_bytes
            decoded = _path_figure(sub, "decoded") - first_decoded
    p50, p99 = (np.percentile(ages, [50, 99]) if ages else (np.nan, np.nan))
    what = "raw pixels" if codec == "raw" else "packets, decoded by the reader"
    return PathFigures(what, len(ages) / elapsed, decoded / elapsed, nbytes / elapsed,
                       (float(p50), float(p99)), cpu)


def _path_figure(sub: framebus.Subscriber, name: str) -> int:
    return int(getattr(sub._path, name, 0))


def report(figures: list[PathFigures]) -> list[str]:
    """The section's lines: a row per path, then the target."""
    lines = [f"{f.what}: {f.fps:.1f} frames/s ({f.decoded_fps:.1f} decoded), "
             f"{f.bytes_per_s * 8 / 1e6:,.1f} Mbit/s, age p50/p99 {f.age_ms[0]:.1f}/"
             f"{f.age_ms[1]:.1f} ms, reader CPU {f.cpu:.0f}%"
             for f in figures]
    raw, packets = figures
    share = packets.bytes_per_s / raw.bytes_per_s if raw.bytes_per_s else float("nan")
    passed = bool(share <= MAX_SHARE and packets.decoded_fps >= 0.95 * FPS)
    lines.append(f"{verdict(passed)} packets for remote readers that decode: at most "
                 f"{MAX_SHARE:.0%} of raw pixels' bytes/s at 1080p25, every frame decoded: "
                 f"{share:.2%} of raw's, {packets.decoded_fps:.1f} frames/s decoded")
    return lines
