"""Throttled logging: a thing that recurs is said at most once in a while, with how often.

A flood of garbage, or a client retrying ten times a second with a refused key, must not
become a flood of logs; but the operator must still learn that it goes on, and how much.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Hashable


class Throttle:
    """Logs at most once every *every* seconds per key; the rest are counted and the count
    is told with the next message that is logged.

    At most *keys* keys are remembered (the oldest is forgotten first), so a flood of
    distinct keys costs bounded memory.
    """

    def __init__(self, logger: logging.Logger, every: float, *, keys: int = 256) -> None:
        self._log = logger
        self.every = every
        self._keys = keys
        self._seen: dict[Hashable, tuple[float, int]] = {}  # key: (last logged, unsaid since)

    def warning(self, message: str, *args: object, key: Hashable = None) -> bool:
        """Log *message* (%-formatted with *args*) unless it was logged for *key* lately.

        Returns whether it was logged.
        """
        now = time.monotonic()
        last, unsaid = self._seen.get(key, (-float("inf"), 0))
        if now - last < self.every:
            self._seen[key] = (last, unsaid + 1)
            return False
        self._seen.pop(key, None)
        if len(self._seen) >= self._keys:
            del self._seen[next(iter(self._seen))]
        self._seen[key] = (now, 0)
        more = f" (and {unsaid} more since the last one logged)" if unsaid else ""
        self._log.warning(message + more, *args)
        return True

    def forget(self) -> None:
        """Say the next of each again at once (after a change that makes them news)."""
        self._seen.clear()
