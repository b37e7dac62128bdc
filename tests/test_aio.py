"""framebus.aio against real producer processes and real rings, under asyncio's own loop and
under uvloop: recv, iteration, `async with`, timeouts, and cancellation that leaves no
reader registered and loses no frame."""

from __future__ import annotations

import asyncio
import collections
import time

import pytest
import uvloop

import framebus
from framebus import aio

LOOPS = {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}


@pytest.fixture(params=sorted(LOOPS))
def run(request):
    """Runs a coroutine to its end on a fresh loop of the parameter's kind."""
    loop = LOOPS[request.param]()
    if request.param == "uvloop":
        assert isinstance(loop, uvloop.Loop)

    def run(coro, timeout: float = 60):
        return loop.run_until_complete(asyncio.wait_for(coro, timeout))
    try:
        yield run
    finally:
        loop.close()


def start_testsrc(procs, name: str, fps: float = 30):
    return procs.framebus("testsrc", name, "--size", "160x120", "--fps", str(fps))


def registered(fd: int) -> bool:
    """Whether the running loop has a reader on *fd* (removing it to see, so only when no
    recv() is meant to be waiting)."""
    return asyncio.get_running_loop().remove_reader(fd)


async def first_frame(sub, within: float = 15.0) -> framebus.Frame:
    return await sub.recv(timeout=within)


def test_recv_iterate_and_async_with(procs, broker, stream_name, run):
    start_testsrc(procs, stream_name)

    async def main():
        async with aio.Subscriber(stream_name) as sub:
            frame = await first_frame(sub)
            assert frame.stream == stream_name and frame.array.shape == (120, 160, 3)
            seqs = []
            async for frame in sub:
                seqs.append(frame.seq)
                if len(seqs) == 20:
                    break
            assert seqs == sorted(seqs) and len(set(seqs)) == 20
            assert not registered(sub.sync.fileno())
        assert sub.closed
    run(main())


def test_a_timeout_raises_and_leaves_no_reader(broker, stream_name, run):
    async def main():
        async with aio.Subscriber(f"{stream_name}-none") as sub:
            started = time.monotonic()
            with pytest.raises(framebus.Timeout):
                await sub.recv(timeout=0.5)
            assert 0.45 < time.monotonic() - started < 2.0
            assert not registered(sub.sync.fileno())
    run(main())


def test_cancelled_while_waiting_then_recv_works(procs, broker, stream_name, run):
    """A recv() cancelled while its stream does not exist yet leaves no reader behind, and the
    same subscriber receives once the producer comes."""
    async def main():
        async with aio.Subscriber(stream_name) as sub:
            task = asyncio.ensure_future(sub.recv())
            await asyncio.sleep(0.5)
            assert not task.done()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert not registered(sub.sync.fileno())
            start_testsrc(procs, stream_name)
            frame = await first_frame(sub)
            assert frame.stream == stream_name
    run(main())


def test_cancellations_lose_no_frame(procs, broker, stream_name, run):
    """Many recv() calls cut short by wait_for (which cancels them) between frames: in mode
    all, every frame still arrives, in order, none skipped."""
    start_testsrc(procs, stream_name, fps=50)

    async def main():
        async with aio.Subscriber(stream_name, mode="all") as sub:
            seqs = [(await first_frame(sub)).seq]
            cancelled = 0
            end = time.monotonic() + 3.0
            while time.monotonic() < end:
                try:
                    frame = await asyncio.wait_for(sub.recv(), 0.005)
                except asyncio.TimeoutError:
                    cancelled += 1
                    continue
                assert frame.skipped == 0, frame
                seqs.append(frame.seq)
            assert cancelled > 50
            assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
            assert len(seqs) > 100
            assert not registered(sub.sync.fileno())
    run(main())


def test_one_task_at_a_time(broker, stream_name, run):
    async def main():
        async with aio.Subscriber(stream_name) as sub:
            waiting = asyncio.ensure_future(sub.recv())
            await asyncio.sleep(0.1)
            with pytest.raises(RuntimeError, match="already awaited"):
                await sub.recv(timeout=0.1)
            waiting.cancel()
            await asyncio.gather(waiting, return_exceptions=True)
    run(main())


@pytest.mark.slow
def test_many_streams_in_one_task(procs, broker, stream_name, run):
    """Eight streams, one of them started late, into one task through one reader."""
    names = [f"{stream_name}-{i}" for i in range(8)]
    for name in names[:7]:
        start_testsrc(procs, name, fps=20)

    async def main():
        async with aio.MultiSubscriber([f"{stream_name}-*"], discover_every=0.3) as subs:
            got: collections.Counter = collections.Counter()
            end = time.monotonic() + 20
            started_late = False
            while time.monotonic() < end and (len(got) < 8 or min(got.values()) < 20):
                frame = await subs.recv(timeout=5.0)
                got[frame.stream] += 1
                if not started_late and len(got) == 7:
                    start_testsrc(procs, names[7], fps=20)
                    started_late = True
            assert sorted(got) == names and min(got.values()) >= 20, got
            assert sorted(subs.subscribers) == names
            for sub in subs.subscribers.values():
                assert sub.dropped == 0, sub
            assert not registered(subs.sync.fileno())
    run(main())


def test_closing_ends_an_iteration_waiting_in_another_task(broker, stream_name, run):
    async def main():
        sub = aio.Subscriber(f"{stream_name}-none")
        got = []

        async def iterate():
            async for frame in sub:
                got.append(frame)
        task = asyncio.ensure_future(iterate())
        await asyncio.sleep(0.3)
        fd = sub.sync.fileno()
        sub.close()
        await asyncio.wait_for(task, 2.0)  # ended, not cancelled
        assert got == [] and sub.closed
        assert not registered(fd)
        with pytest.raises(ValueError, match="after close"):
            await sub.recv(timeout=0.1)
    run(main())
