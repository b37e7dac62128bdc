"""A subscriber's frame accounting, kept by whichever path it is on."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from ..support.throttle import Throttle

if TYPE_CHECKING:
    from ..frame import Frame

log = logging.getLogger("framebus.subscriber")

#: Rejected messages are logged at most once in this many seconds (the rest are counted).
REJECTIONS_LOGGED = 10.0


class Counts:
    """Received, dropped and rejected frames of one subscriber, and the gap before the next."""

    def __init__(self, name: str = "") -> None:
        self._name = name
        self._rejections = Throttle(log, REJECTIONS_LOGGED)
        self.received = self.dropped = self.rejected = 0
        self._skipped = 0  # missed since the last frame returned
        self._last: tuple[bytes, int] | None = None  # (ring token, seq) of the last frame seen

    def seen(self, token: bytes, seq: int) -> None:
        """A frame of the stream came by: count the gap before it, in the same ring."""
        last, self._last = self._last, (token, seq)
        if last is not None and last[0] == token and seq > last[1] + 1:
            self.missed(seq - last[1] - 1)

    def is_new(self, token: bytes, seq: int) -> bool:
        """Whether frame *seq* of ring *token* is newer than every frame of it seen so far."""
        return self._last is None or self._last[0] != token or seq > self._last[1]

    def reject(self, what: str, why: Exception) -> None:
        """A message refused: counted, and logged, though at most once every
        REJECTIONS_LOGGED seconds, so that a flood of garbage is no flood of logs."""
        self.rejected += 1
        self._rejections.warning("%s: rejected %s: %s", self._name, what, why)

    def missed(self, n: int) -> None:
        self.dropped += n
        self._skipped += n

    def replaced(self, old: Frame, new: Frame) -> None:
        """Frame *old*, counted as returned but kept unreturned (Subscriber.ready()), gives
        way to the newer *new*: it is dropped instead, and in the gap before *new*."""
        self.received -= 1
        self.dropped += 1
        new.skipped += old.skipped + 1

    def returned(self) -> int:
        """A frame is handed to the caller: how many it skipped."""
        skipped, self._skipped = self._skipped, 0
        self.received += 1
        return skipped
