"""Rate meters: how many events (frames) a second, over a sliding window of seconds.

One meter serves every figure framebus shows: a decoder's ``decode_fps``, a publisher's
``fps`` and the age of its last frame, and what ``framebus watch`` and ``framebus view``
show of a subscription (its frame rate, and latency percentiles from the value each
event carries)::

    meter = RateMeter(window=2.0)
    meter.add()                  # an event, now
    meter.add(frame.age)         # one that carries a value (a latency, in seconds)
    meter.rate                   # events a second over the last 2 s; decays to 0 when idle
    meter.percentile(99)         # of the values of the last 2 s; None without any
    meter.total, meter.age       # events ever counted; seconds since the last one

A meter may be written by one thread and read by another (the frame path and the
heartbeat): each call takes a lock, uncontended in the common case.
"""

from __future__ import annotations

import threading
import time
from collections import deque

import numpy as np


class RateMeter:
    """Counts events, and keeps those of the last *window* seconds for their rate and values."""

    def __init__(self, window: float = 2.0) -> None:
        if window <= 0:
            raise ValueError(f"a rate meter needs a window > 0 s, got {window}")
        self.window = window
        self.total = 0  # events ever counted, reset() included
        self.last: float | None = None  # monotonic time of the last event
        self._events: deque[tuple[float, float | None]] = deque()
        self._lock = threading.Lock()

    def add(self, value: float | None = None) -> None:
        """Count one event, now, carrying *value* (a latency, say) if given."""
        now = time.monotonic()
        with self._lock:
            self.total += 1
            self.last = now
            self._events.append((now, value))
            self._trim(now)

    def reset(self) -> None:
        """Forget the window (a source that went away): the rate is 0 until events come again."""
        with self._lock:
            self._events.clear()

    @property
    def rate(self) -> float:
        """Events a second over the window; 0.0 with fewer than two events in it.

        Measured up to now, not up to the last event, so it falls off when events stop.
        """
        now = time.monotonic()
        with self._lock:
            self._trim(now)
            if len(self._events) < 2:
                return 0.0
            span = now - self._events[0][0]
            return (len(self._events) - 1) / span if span > 0 else 0.0

    @property
    def age(self) -> float | None:
        """Seconds since the last event; None before the first."""
        last = self.last
        return None if last is None else time.monotonic() - last

    def percentile(self, q: float) -> float | None:
        """The *q*-th percentile (0-100) of the values carried by the window's events."""
        with self._lock:
            self._trim(time.monotonic())
            values = [v for _, v in self._events if v is not None]
        return float(np.percentile(values, q)) if values else None

    def _trim(self, now: float) -> None:
        events, horizon = self._events, now - self.window
        while events and events[0][0] < horizon:
            events.popleft()
