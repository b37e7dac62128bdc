"""A PacketSubscriber driven by the asyncio loop, as framebus.aio drives pixel subscribers.

A recv() that finds no packet ready registers the subscriber's fileno() (its ZeroMQ
socket's fd) with loop.add_reader() and a timer of the subscriber's POLL, and awaits
whichever comes first; then it asks again (try_recv). The ZeroMQ fd is edge-triggered,
which is safe here: try_recv() reads every queued descriptor (and so re-arms the fd)
before it answers, and the ring, not the descriptor, says what packets there are; the
timer covers a wake-up lost all the same, at most POLL late.

Cancellation leaves nothing registered, and a packet is taken only by the try_recv()
that returns it, so a cancelled recv() loses none.
"""

from __future__ import annotations

import asyncio

from ..errors import Timeout
from ..packets import Packet, PacketSubscriber
from ..packets.subscriber import POLL


class AsyncPackets:
    """recv() awaited over *sub*, which the caller keeps and closes."""

    def __init__(self, sub: PacketSubscriber) -> None:
        self.sub = sub

    async def recv(self, timeout: float | None = None) -> Packet:
        """The next packet; framebus.Timeout if none comes within *timeout* seconds."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while True:
            packet = self.sub.try_recv()
            if packet is not None:
                return packet
            wait = POLL
            if deadline is not None:
                left = deadline - loop.time()
                if left <= 0:
                    raise Timeout(f"no packet of {self.sub.name} within {timeout} s")
                wait = min(wait, left)
            await self._readable(loop, wait)

    async def _readable(self, loop: asyncio.AbstractEventLoop, wait: float) -> None:
        woken = loop.create_future()
        fd = self.sub.fileno()

        def wake() -> None:
            if not woken.done():
                woken.set_result(None)

        loop.add_reader(fd, wake)
        timer = loop.call_later(wait, wake)
        try:
            await woken
        finally:
            timer.cancel()
            loop.remove_reader(fd)
