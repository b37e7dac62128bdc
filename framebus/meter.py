"""Live figures of a consumer: frame rate, latency percentiles, drops."""

from __future__ import annotations

import time
from collections import deque

import numpy as np


class Meter:
    """Counts frames and their latencies over a sliding window of seconds."""

    def __init__(self, window: float = 2.0) -> None:
        self.window = window
        self.frames = 0
        self._times: deque[float] = deque()
        self._latencies: deque[float] = deque()

    def add(self, latency_s: float) -> None:
        now = time.monotonic()
        self.frames += 1
        self._times.append(now)
        self._latencies.append(latency_s)
        self._trim(now)

    def _trim(self, now: float) -> None:
        while self._times and now - self._times[0] > self.window:
            self._times.popleft()
            self._latencies.popleft()

    @property
    def fps(self) -> float:
        self._trim(time.monotonic())
        if len(self._times) < 2:
            return 0.0
        span = self._times[-1] - self._times[0]
        return (len(self._times) - 1) / span if span > 0 else 0.0

    def latency_ms(self, percentile: float) -> float | None:
        if not self._latencies:
            return None
        return float(np.percentile(np.fromiter(self._latencies, float), percentile)) * 1e3
