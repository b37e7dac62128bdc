"""The descriptor behind Subscriber.fileno() and PacketSubscriber.fileno(): one epoll that
watches whichever path the subscriber is on, so the caller's descriptor stays the same
while paths come and go."""

from __future__ import annotations

import select
from typing import Protocol


class HasFileno(Protocol):
    def fileno(self) -> int | None: ...


class PathWatch:
    """An epoll holding the descriptor of the subscriber's current path, if it has one."""

    def __init__(self) -> None:
        self._epoll = select.epoll()
        self._watched: int | None = None

    def fileno(self) -> int:
        return self._epoll.fileno()

    def watch(self, path: HasFileno | None) -> None:
        """Watch *path*'s descriptor (none for None), registered afresh each time: a path
        may have changed its socket (a new relay) even where the number is the same."""
        self.unwatch()
        fd = None if path is None else path.fileno()
        if fd is not None:
            self._epoll.register(fd, select.EPOLLIN)
            self._watched = fd

    def unwatch(self) -> None:
        """Stop watching, before the path's socket is closed (its number may be reused)."""
        if self._watched is not None:
            try:
                self._epoll.unregister(self._watched)
            except OSError:
                pass  # closed already: the kernel dropped it from the epoll by itself
            self._watched = None

    def close(self) -> None:
        self.unwatch()
        self._epoll.close()
