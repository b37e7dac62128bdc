"""Contract A: a Subscriber one can wait on. fileno() is readable when a frame may be ready,
try_recv() never waits, ready() keeps the frame it found, and a waiter that follows the rule
(readable: try_recv() until None; wait at most sub.housekeeping) loses no frame and no
wake-up, with real producer processes, selectors and select."""

from __future__ import annotations

import select
import selectors
import signal
import time

import numpy as np
from conftest import free_port, wait_until
from test_remote import RelayProcess

import framebus
from framebus.testsrc import TestPattern

SHAPE = (48, 64, 3)


def start_testsrc(procs, name, fps, *extra):
    return procs.framebus("testsrc", name, "--size", "64x48", "--fps", str(fps), *extra)


class Waiter:
    """A caller that waits on fileno() by the contract's rule, over one selector.

    Counts what tells a lost wake-up from a spurious one: `late` are the frames that a
    try_recv() found only after a wait that timed out (the fd never said so), `spurious`
    the wake-ups after which try_recv() found nothing at all.

    Only a timed-out wait makes a frame late. After a wait that another subscriber's fd
    ended, a frame of this one may have come in the moment since the wait returned: its
    fd said so too late for that wait, not never. And a subscriber's first frame may come
    from the housekeeping that found its stream, so each subscriber counts from its own.
    """

    def __init__(self, *subs: framebus.Subscriber) -> None:
        self.selector = selectors.DefaultSelector()
        for sub in subs:
            self.selector.register(sub, selectors.EVENT_READ)
        self.subs = subs
        self.frames: dict[str, list[framebus.Frame]] = {s.name: [] for s in subs}
        self.late = self.spurious = self.wakeups = 0
        #: The subscribers whose first frame came: from then on none of theirs may come late.
        self.connected: set[framebus.Subscriber] = set()

    def step(self) -> None:
        timeout = min(s.housekeeping for s in self.subs)
        woken = {key.fileobj for key, _ in self.selector.select(timeout)}
        self.wakeups += len(woken)
        for sub in self.subs:
            got = 0
            while (frame := sub.try_recv()) is not None:
                got += 1
                self.frames[sub.name].append(frame)
                if not woken and sub in self.connected:
                    self.late += 1
            if sub in woken and not got:
                self.spurious += 1
            if got:
                self.connected.add(sub)

    def until(self, predicate, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            self.step()

    def close(self) -> None:
        self.selector.close()


def seqs(frames: list[framebus.Frame]) -> list[int]:
    return [f.seq for f in frames]


def test_a_selector_waiter_gets_every_frame_of_a_producer_process(procs, broker, stream_name):
    """Subscriber first, producer process second, 400 frames at 200 fps: every one of them,
    in order, whole, each found through a wake-up rather than a timeout."""
    with framebus.Subscriber(stream_name, mode="all") as sub:
        fd = sub.fileno()
        waiter = Waiter(sub)
        start_testsrc(procs, stream_name, 200, "--frames", "400", "--slots", "64")
        frames = waiter.frames[stream_name]
        waiter.until(lambda: frames and frames[-1].seq == 399, 30, "frame 399")
        pattern = TestPattern(SHAPE)
        assert seqs(frames) == list(range(400))
        assert all(pattern.matches(f.copy(), f.seq) for f in frames[-64:])
        assert sub.dropped == 0 and sub.received == 400
        assert waiter.late == 0, f"{waiter.late} frames found only after a timed-out wait"
        assert sub.fileno() == fd
        waiter.close()


def test_spurious_wakeups_lose_nothing_busy_and_quiet_streams_in_one_select(procs, broker,
                                                                             stream_name):
    """A busy stream and a quiet one behind one selector: the quiet one's wake-ups (spurious
    ones allowed) still bring all of its frames, and the busy one loses none either."""
    busy, quiet = stream_name + "-busy", stream_name + "-quiet"
    with framebus.Subscriber(busy, mode="all") as a, \
            framebus.Subscriber(quiet, mode="all") as b:
        waiter = Waiter(a, b)
        start_testsrc(procs, busy, 300, "--frames", "900", "--slots", "128")
        start_testsrc(procs, quiet, 10, "--frames", "25")
        got_a, got_b = waiter.frames[busy], waiter.frames[quiet]
        waiter.until(lambda: got_a and got_a[-1].seq == 899 and got_b and got_b[-1].seq == 24,
                     40, "both streams' last frames")
        assert seqs(got_a) == list(range(900)) and seqs(got_b) == list(range(25))
        assert waiter.late == 0
        print(f"wake-ups {waiter.wakeups}, spurious {waiter.spurious}")
        waiter.close()


def test_fileno_is_stable_and_keeps_waking_across_a_producer_restart(procs, broker,
                                                                     stream_name):
    """SIGKILL the producer, start another (a new ring, a new size): the same fd wakes the
    waiter for the new producer's frames, with none of them found late."""
    first = start_testsrc(procs, stream_name, 100)
    with framebus.Subscriber(stream_name) as sub:
        fd = sub.fileno()
        waiter = Waiter(sub)
        frames = waiter.frames[stream_name]
        waiter.until(lambda: len(frames) >= 20, 20, "frames of the first producer")
        old_token = frames[-1].token
        procs.stop(first, signal.SIGKILL)
        procs.framebus("testsrc", stream_name, "--size", "32x24", "--fps", "100")
        waiter.until(lambda: frames[-1].token != old_token, 20, "the new producer's frames")
        waiter.late = 0
        new = len(frames)
        waiter.until(lambda: len(frames) >= new + 50, 20, "50 more frames")
        assert sub.fileno() == fd
        assert frames[-1].shape == (24, 32, 3)
        assert waiter.late == 0, f"{waiter.late} frames came late after the restart"
        waiter.close()


def test_select_and_poll_take_the_fd_too(procs, broker, stream_name):
    start_testsrc(procs, stream_name, 100)
    with framebus.Subscriber(stream_name) as sub:
        wait_until(sub.try_recv, 20, what="a first frame")
        readable, _, _ = select.select([sub], [], [], 2.0)
        assert readable == [sub]
        poller = select.poll()
        poller.register(sub.fileno(), select.POLLIN)
        while sub.try_recv() is not None:
            pass
        assert poller.poll(2000), "no wake-up for the next frame"
        assert sub.try_recv() is not None or wait_until(sub.try_recv, 1, what="the frame")


def test_try_recv_never_waits(procs, broker, stream_name):
    """No producer, then a producer, then no broker: try_recv() returns at once each time."""
    def slowest(sub: framebus.Subscriber, seconds: float, until=None) -> float:
        worst, end = 0.0, time.monotonic() + seconds
        while time.monotonic() < end:
            started = time.monotonic()
            frame = sub.try_recv()
            worst = max(worst, time.monotonic() - started)
            if until is not None and frame is not None:
                return worst
            time.sleep(0.005)
        assert until is None, "no frame came"
        return worst

    with framebus.Subscriber(stream_name) as sub:
        assert slowest(sub, 1.0) < 0.1
        start_testsrc(procs, stream_name, 50)
        assert slowest(sub, 20, until="a frame") < 0.1
        broker.kill()
        assert slowest(sub, 2.0) < 0.15


def publish(pub: framebus.Publisher) -> int:
    return pub.publish(np.full(SHAPE, pub.seq % 256, np.uint8))


def test_ready_keeps_the_frame_for_the_next_recv(broker, stream_name):
    with framebus.Publisher(stream_name, shape=SHAPE, slots=16) as pub, \
            framebus.Subscriber(stream_name, mode="all") as sub:
        wait_until(lambda: publish(pub) is not None and sub.ready(), 10, what="a ready frame")
        assert sub.ready()  # asked again: the same frame, still kept
        frame = sub.recv(timeout=0)
        assert sub.received == frame.seq + 1 - sub.dropped
        rest: list[framebus.Frame] = []

        def all_in() -> bool:  # the descriptors of the last frames may still be on the way
            while (f := sub.try_recv()) is not None:
                rest.append(f)
            return pub.seq - 1 in seqs([frame, *rest])
        wait_until(all_in, 5, what="the frames after it")
        assert seqs(rest) == list(range(frame.seq + 1, pub.seq))
        assert not sub.ready() and sub.try_recv() is None


def test_ready_in_latest_mode_gives_way_to_a_newer_frame(broker, stream_name):
    """In mode "latest" the kept frame is replaced by a newer one, and counted as dropped."""
    with framebus.Publisher(stream_name, shape=SHAPE, slots=16) as pub, \
            framebus.Subscriber(stream_name) as sub:
        published: list[int] = []
        wait_until(lambda: published.append(publish(pub)) or sub.ready(), 10,
                   what="a ready frame")
        seen = [-1]

        def drained() -> bool:
            while (frame := sub.try_recv()) is not None:
                seen[0] = frame.seq
            return seen[0] == published[-1]

        # Up to the last frame published so far: one whose descriptor is still on its way
        # would otherwise count as dropped below.
        wait_until(drained, 5, what="the first frames, drained")
        received, dropped = sub.received, sub.dropped
        kept = publish(pub)
        wait_until(sub.ready, 5, what="the kept frame")
        newest = [publish(pub) for _ in range(3)][-1]
        wait_until(lambda: sub.ready() and sub._held.seq == newest, 5, what="the newest")
        frame = sub.recv(timeout=0)
        assert frame.seq == newest and frame.seq > kept
        assert sub.received == received + 1
        assert sub.dropped == dropped + (newest - kept)
        assert frame.skipped == newest - kept


def test_the_network_path_wakes_the_waiter_too_and_follows_a_moved_relay(procs, broker,
                                                                         stream_name):
    """transport="tcp" through a relay process: frames come by wake-ups; the relay killed
    and started on another port, the same fd wakes the waiter for the new relay's frames
    (the subscriber re-registered the new socket's descriptor behind it)."""
    first = RelayProcess(procs, f"tcp://127.0.0.1:{free_port()}").start()
    start_testsrc(procs, stream_name, 50)
    with framebus.Subscriber(stream_name, transport="tcp") as sub:
        fd = sub.fileno()
        waiter = Waiter(sub)
        frames = waiter.frames[stream_name]
        waiter.until(lambda: len(frames) >= 30, 20, "frames through the relay")
        assert sub.path == "tcp" and all(f.remote for f in frames)
        assert waiter.late == 0, f"{waiter.late} frames came late"
        procs.stop(first.proc, signal.SIGKILL)
        second = RelayProcess(procs, f"tcp://127.0.0.1:{free_port()}").start()
        waiter.until(lambda: sub.info is not None and sub.info.relay == second.endpoint
                     and frames[-1].seq > 0, 20, "the new relay")
        seen = len(frames)
        waiter.until(lambda: len(frames) >= seen + 5, 20, "a frame through the new relay")
        waiter.late = 0
        seen = len(frames)
        waiter.until(lambda: len(frames) >= seen + 30, 20, "frames through the new relay")
        assert waiter.late == 0, f"{waiter.late} frames came late through the new relay"
        assert sub.fileno() == fd
        waiter.close()
