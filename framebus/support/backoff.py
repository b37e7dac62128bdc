"""Capped exponential backoff, for whatever retries something that keeps failing.

::

    backoff = Backoff(first=0.5, cap=10.0, stable_after=10.0)
    while True:
        started = time.monotonic()
        run_until_it_fails()
        if not backoff.stable(time.monotonic() - started):   # a long run starts over
            time.sleep(backoff.next())                        # 0.5, 1, 2, 4, 8, 10, 10...

The decoder worker waits ``next()`` before every reconnect; the supervisor restarts a
child at once after a stable run and after ``next()`` otherwise.
"""

from __future__ import annotations


class Backoff:
    """Delays of *first*, twice that, and so on up to *cap*, for tries that keep failing.

    A try that lasted *stable_after* seconds or more counts as a success and starts the
    backoff over (see :meth:`stable`).
    """

    def __init__(self, first: float, cap: float, stable_after: float) -> None:
        if not 0 < first <= cap:
            raise ValueError(f"backoff needs 0 < first <= cap, got {first} and {cap}")
        self.first = first
        self.cap = cap
        self.stable_after = stable_after
        self.failures = 0  # delays handed out since the last reset

    @property
    def upcoming(self) -> float:
        """The delay the next call of :meth:`next` returns."""
        return min(self.cap, self.first * 2.0 ** min(self.failures, 64))

    def next(self) -> float:
        """The delay before the next try; the one after it doubles, up to the cap."""
        delay = self.upcoming
        self.failures += 1
        return delay

    def reset(self) -> None:
        """Start over at *first*."""
        self.failures = 0

    def stable(self, ran: float) -> bool:
        """Whether a try that lasted *ran* seconds was a success; if so, start over."""
        if ran >= self.stable_after:
            self.reset()
            return True
        return False
