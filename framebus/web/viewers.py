"""A viewer's queue of chunks (fMP4 fragments, JPEGs) between a shared feed and its socket.

The feed offers each chunk to every viewer without waiting; the viewer's own task sends
them as fast as its connection takes them. A viewer too slow for the stream would need
an ever longer queue: past its limit the queue is emptied and the viewer waits for the
next key frame (every JPEG is one), so memory stays bounded and the viewer catches up
to live instead of falling further behind.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Iterable

#: Chunks a viewer may have waiting beyond what it was given on joining: 2 s at 25 fps.
BEHIND = 50
#: WebSocket close code of a stream that restarted or changed: the player reconnects.
RESTARTED = 4001


class Viewer:
    """One connection's chunks, in order, from a key frame."""

    def __init__(self, limit: int = BEHIND) -> None:
        self.limit = limit
        self.dropped = 0  # chunks thrown away for slowness
        self.end: tuple[int, str] | None = None  # (close code, reason) once the feed ended
        self._queue: deque[bytes] = deque()
        self._waiting_key = True
        self._seeded = False  # offers before the seed would come before the init segment
        self._ready = asyncio.Event()

    def seed(self, chunks: Iterable[bytes], key: bool) -> None:
        """What a joining viewer starts with (init segment, the GOP so far), over its limit."""
        self._queue.extend(chunks)
        self.limit += len(self._queue)
        self._waiting_key = not key
        self._seeded = True
        self._ready.set()

    def offer(self, chunk: bytes, key: bool) -> None:
        if not self._seeded:
            return
        if len(self._queue) >= self.limit:
            self.dropped += len(self._queue)
            self._queue.clear()
            self.limit = BEHIND
            self._waiting_key = True
        if self._waiting_key and not key:
            return
        self._waiting_key = False
        self._queue.append(chunk)
        self._ready.set()

    def skip_to_key(self) -> None:
        """Packets were lost upstream: nothing more until the next key frame."""
        self._waiting_key = True

    def finish(self, code: int, reason: str) -> None:
        """The feed ended: get() returns None once the queue is sent."""
        self.end = (code, reason)
        self._ready.set()

    async def get(self, timeout: float | None = None) -> bytes | None:
        """The next chunk; None when the feed ended. TimeoutError after *timeout* seconds,
        so that a sender can look whether its client is still there."""
        while not self._queue:
            if self.end is not None:
                return None
            self._ready.clear()
            await asyncio.wait_for(self._ready.wait(), timeout)
        return self._queue.popleft()
