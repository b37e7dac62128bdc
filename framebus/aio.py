"""framebus for asyncio: Subscriber and MultiSubscriber whose recv() is awaited.

    async with framebus.aio.MultiSubscriber(["cam1", "lobby-*"]) as subs:
        async for frame in subs: ...
        frame = await subs.recv(timeout=1.0)

The event loop drives them through file descriptors: a recv() that finds no frame ready
registers the subscriber's fileno() with loop.add_reader() and a timer of its
housekeeping interval, and awaits whichever comes first; then it asks again (try_recv).
No thread per stream, no busy polling, any loop that has add_reader (asyncio's own,
uvloop).

Cancellation: a recv() cancelled while it waits removes its reader and its timer before
the CancelledError leaves it, and it never holds a frame while it waits (a frame is taken
only by the try_recv() that returns it), so the next recv() finds every frame a cancelled
one would have. One task at a time awaits a given subscriber's recv().

A subscriber's housekeeping (a broker lookup while its stream is away) runs in the loop's
thread, as does its construction, which asks the broker once: each takes at most half a
second, and only while a stream is not found.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from typing import Any, Protocol, TypeVar

from . import multi, subscriber
from .errors import Timeout
from .frame import Frame


class _Receiver(Protocol):
    """What the loop drives (Contract A)."""

    @property
    def housekeeping(self) -> float: ...

    def fileno(self) -> int: ...

    def try_recv(self) -> Frame | None: ...

    def close(self) -> None: ...


_A = TypeVar("_A", bound="_AsyncReceiver")


class _AsyncReceiver:
    """recv(), iteration and `async with` over a Contract A receiver."""

    def __init__(self, inner: _Receiver, what: str) -> None:
        self._inner = inner
        self._what = what
        self._waiting = False
        self._closed = False
        #: The loop, fd and future of the recv() waiting now, for close() to end it.
        self._waiter: tuple[asyncio.AbstractEventLoop, int, asyncio.Future[None]] | None = None

    async def recv(self, timeout: float | None = None) -> Frame:
        """The next frame; waits at most *timeout* seconds (None: forever). Raises
        framebus.Timeout when none comes in time, and ValueError once it is closed (also
        to a recv() waiting then)."""
        self._check_open()
        frame = self._inner.try_recv()
        if frame is not None:
            return frame
        if self._waiting:
            raise RuntimeError(f"recv() of {self._what} is already awaited by another task")
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        self._waiting = True
        try:
            while True:
                wait = max(0.0, self._inner.housekeeping)  # 0: its housekeeping is due now
                if deadline is not None:
                    left = deadline - loop.time()
                    if left <= 0:
                        raise Timeout(f"no frame of {self._what} within {timeout} s")
                    wait = min(wait, left)
                await self._readable(loop, wait)
                self._check_open()
                frame = self._inner.try_recv()
                if frame is not None:
                    return frame
        finally:
            self._waiting = False

    async def _readable(self, loop: asyncio.AbstractEventLoop, wait: float) -> None:
        """Until fileno() is readable or *wait* seconds pass; nothing left registered after."""
        woken = loop.create_future()
        fd = self._inner.fileno()

        def wake() -> None:
            if not woken.done():
                woken.set_result(None)

        loop.add_reader(fd, wake)
        timer = loop.call_later(wait, wake)
        self._waiter = (loop, fd, woken)
        try:
            await woken
        finally:
            self._waiter = None
            timer.cancel()
            if not self._closed:  # close() removed it already, before the fd went
                loop.remove_reader(fd)

    def _check_open(self) -> None:
        if self._closed:
            raise ValueError(f"recv() of {self._what} after close()")

    def try_recv(self) -> Frame | None:
        """The next frame if one is ready now, else None; never waits."""
        return self._inner.try_recv()

    def __aiter__(self) -> _AsyncReceiver:
        return self

    async def __anext__(self) -> Frame:
        try:
            return await self.recv()
        except ValueError:
            if self._closed:  # closed meanwhile, by another task: the iteration ends
                raise StopAsyncIteration from None
            raise

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Close the subscriber(s). A recv() waiting meanwhile (in another task) raises
        ValueError, or ends its `async for`; its reader is removed before the fd is closed."""
        if self._closed:
            return
        self._closed = True
        if self._waiter is not None:
            loop, fd, woken = self._waiter
            loop.remove_reader(fd)
            if not woken.done():
                woken.set_result(None)
        self._inner.close()

    async def aclose(self) -> None:
        self.close()

    async def __aenter__(self: _A) -> _A:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()


class Subscriber(_AsyncReceiver):
    """framebus.Subscriber for asyncio: same arguments, recv() awaited.

    >>> async with framebus.aio.Subscriber("cam1") as sub:
    ...     async for frame in sub: ...
    """

    def __init__(self, name: str, **options: Any) -> None:
        self.sync = subscriber.Subscriber(name, **options)
        super().__init__(self.sync, repr(name))

    @property
    def name(self) -> str:
        return self.sync.name

    @property
    def received(self) -> int:
        return self.sync.received

    @property
    def dropped(self) -> int:
        return self.sync.dropped

    def __repr__(self) -> str:
        return f"<aio {self.sync!r}>"


class MultiSubscriber(_AsyncReceiver):
    """framebus.MultiSubscriber for asyncio: same arguments, recv() awaited; the whole set
    is one reader of the loop (its selector's fd), however many streams it follows."""

    def __init__(self, names_or_patterns: str | Iterable[str], **options: Any) -> None:
        self.sync = multi.MultiSubscriber(names_or_patterns, **options)
        super().__init__(self.sync, "any of its streams")

    @property
    def subscribers(self) -> Mapping[str, subscriber.Subscriber]:
        return self.sync.subscribers

    @property
    def received(self) -> int:
        return self.sync.received

    @property
    def dropped(self) -> int:
        return self.sync.dropped

    def __repr__(self) -> str:
        return f"<aio {self.sync!r}>"
