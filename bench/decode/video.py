"""The decode benchmark's test video: 1080p H.264 with a camera's GOP, a busy moving picture
with film grain, so that decoding is real work."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench.decode.settings import CRF, FPS, GOP, HEIGHT, PRESET, WIDTH, err


@dataclass(frozen=True)
class Video:
    path: Path
    frames: int
    bytes: int

    @property
    def duration(self) -> float:
        return self.frames / FPS

    @property
    def mbps(self) -> float:
        return self.bytes * 8 / self.duration / 1e6

    def describe(self) -> str:
        return (f"{WIDTH}x{HEIGHT} H.264 (libx264 {PRESET}, crf {CRF}, yuv420p, a key frame "
                f"every {GOP} frames), {FPS} fps, {self.frames} frames = {self.duration:g} s, "
                f"{self.mbps:.1f} Mbit/s")


def encode_video(path: Path, seconds: float) -> Video:
    """Encode the test video: gradients, diagonal bands, moving shapes and grain on top.

    The grain changes every frame, as a camera sensor's does, so the file costs bits and
    decoding is real work (the same picture as the earlier conversion measurements). A key
    frame every GOP frames exactly, P and B frames between, as a camera sends: the test
    clips' encoder (framebus.testing.media), which sees to it.
    """
    from framebus.testing import media

    frames = max(2 * FPS, round(seconds * FPS))
    picture = _Picture()

    def pictures() -> Iterator[np.ndarray]:
        for i in range(frames):
            if i % FPS == 0:
                err.print(f"  encoding the test video: frame {i}/{frames}", highlight=False)
            yield picture.draw(i)

    media.encode_frames(path, pictures(), WIDTH, HEIGHT, FPS, GOP,
                        options={"preset": PRESET, "crf": str(CRF)})
    return Video(path, frames, path.stat().st_size)


class _Picture:
    """The frames of the test video, drawn with numpy and OpenCV."""

    def __init__(self) -> None:
        x = np.arange(WIDTH, dtype=np.float32)
        y = np.arange(HEIGHT, dtype=np.float32)
        self.x, self.y = x, y
        self.diagonal = ((x[None, :] + y[:, None]) % 256).astype(np.uint8)
        rng = np.random.default_rng(1)
        self.grain = rng.integers(0, 10, size=(HEIGHT + 64, WIDTH + 64, 3), dtype=np.uint8)
        self.image = np.empty((HEIGHT, WIDTH, 3), np.uint8)

    def draw(self, i: int) -> np.ndarray:
        import cv2

        t, img = i / FPS, self.image
        # Blue varies along x, green along y: broadcast rows and columns, not full planes.
        img[..., 0] = (127 + 127 * np.sin(self.x / WIDTH * 6.28 + t)).astype(np.uint8)
        img[..., 1] = (127 + 127 * np.sin(self.y / HEIGHT * 6.28 - 1.3 * t)).astype(
            np.uint8)[:, None]
        np.add(self.diagonal, np.uint8(40 * i % 256), out=img[..., 2])  # wraps: moving bands
        ox, oy = (7 * i) % 64, (3 * i) % 64
        cv2.add(img, self.grain[oy:oy + HEIGHT, ox:ox + WIDTH], dst=img)
        for k in range(12):
            cx = int((0.5 + 0.45 * math.sin(t * (0.7 + 0.13 * k) + k)) * WIDTH)
            cy = int((0.5 + 0.45 * math.cos(t * (0.5 + 0.17 * k) + 2 * k)) * HEIGHT)
            colour = (40 * k % 256, (255 - 20 * k) % 256, (90 + 30 * k) % 256)
            if k % 2:
                cv2.circle(img, (cx, cy), HEIGHT // 10 + 5 * k, colour, -1)
            else:
                cv2.rectangle(img, (cx - WIDTH // 16, cy - HEIGHT // 14),
                              (cx + WIDTH // 16, cy + HEIGHT // 14), colour, -1)
        cv2.putText(img, f"frame {i}", (50, HEIGHT // 2), cv2.FONT_HERSHEY_SIMPLEX,
                    HEIGHT / 300, (255, 255, 255), 4)
        return img
