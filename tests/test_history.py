"""History in mode "all": a subscriber starts from the oldest whole frame still in the ring,
so the frames a producer published before the subscriber's connection was complete (ZeroMQ
drops them: the slow joiner) are returned from the ring, in order, each once."""

from __future__ import annotations

import time
from fractions import Fraction

import numpy as np
import pytest
from conftest import wait_until

import framebus
from framebus.testing import media

SHAPE = (8, 8, 3)
T0 = 1_700_000_000_000_000_000
TIME_BASE = Fraction(1, 90000)


def publish(pub: framebus.Publisher) -> int:
    """Frame pub.seq, its pixels, pts and timestamp all telling its seq."""
    seq = pub.seq
    return pub.publish(np.full(SHAPE, seq % 256, np.uint8), pts=seq, timestamp_ns=T0 + seq)


def drain(sub: framebus.Subscriber, timeout: float = 0.05) -> list[framebus.Frame]:
    """Every frame that comes within *timeout* of the previous one."""
    frames = []
    while True:
        try:
            frames.append(sub.recv(timeout=timeout))
        except framebus.Timeout:
            return frames


def until_received(pub: framebus.Publisher, sub: framebus.Subscriber, take=None):
    """Publish a frame every 50 ms until the subscriber returns some: what *take* (by
    default drain: every frame that came) returned."""
    def step():
        publish(pub)
        return (take or drain)(sub)
    return wait_until(step, 10, interval=0, what="a first frame")


def assert_true_frames(frames: list[framebus.Frame]) -> None:
    """Each frame is the one its seq says, whole, with the writer's own pts and timestamp."""
    for f in frames:
        assert int(f.copy()[0, 0, 0]) == f.seq % 256, f
        assert (f.pts, f.timestamp_ns, f.time_base) == (f.seq, T0 + f.seq, TIME_BASE), f
        assert f.shape == SHAPE and f.fmt == "bgr24"


def assert_gaps_counted(frames: list[framebus.Frame]) -> None:
    """In order, none twice, and every frame between two returned ones counted as skipped."""
    for before, after in zip(frames, frames[1:]):
        assert after.seq > before.seq, (before, after)
        assert after.skipped == after.seq - before.seq - 1, (before, after, after.skipped)


def test_frames_published_before_the_subscriber_are_returned_first(broker, stream_name):
    """K < slots frames before the Subscriber exists: all K, then the live ones, in order."""
    k = 5
    with framebus.Publisher(stream_name, shape=SHAPE, slots=32, time_base=TIME_BASE) as pub:
        for _ in range(k):
            publish(pub)
        with framebus.Subscriber(stream_name, mode="all") as sub:
            got = until_received(pub, sub)
            for _ in range(10):
                publish(pub)
            got += drain(sub)
            assert [f.seq for f in got] == list(range(pub.seq))
            assert all(f.skipped == 0 for f in got) and sub.dropped == 0
            assert_true_frames(got)
            assert sub.received == pub.seq
            # A frame from history is as fragile as any: lapped, it says so.
            first = got[0]
            for _ in range(32):
                publish(pub)
            assert not first.valid()
            with pytest.raises(framebus.FrameOverwritten):
                first.copy()


def test_more_frames_than_slots_before_the_subscriber(broker, stream_name):
    """K > slots: the oldest whole ones; frames lapped while the backlog is being read are
    gaps, counted in dropped and skipped, never stale frames."""
    slots, k = 8, 20
    with framebus.Publisher(stream_name, shape=SHAPE, slots=slots, time_base=TIME_BASE) as pub:
        for _ in range(k):
            publish(pub)
        with framebus.Subscriber(stream_name, mode="all") as sub:
            first = until_received(pub, sub, _recv)
            published = pub.seq
            # Older than the ring's oldest whole frame: before this subscriber's time.
            assert published - slots <= first.seq < k
            assert first.skipped == 0 and sub.dropped == 0
            assert_true_frames([first])
            for _ in range(slots):  # laps the rest of the backlog while it waits to be read
                publish(pub)
            got = [first, *drain(sub)]
            assert_true_frames(got[1:])
            assert_gaps_counted(got)
            assert got[1].skipped > 0, "the lapped backlog is a gap"
            assert got[-1].seq == pub.seq - 1
            assert sub.dropped == sum(f.skipped for f in got) > 0
            for _ in range(slots - 1):  # fewer than the ring holds: none lapped
                publish(pub)
            live = drain(sub)
            assert [f.seq for f in live] == list(range(got[-1].seq + 1, pub.seq))
            assert_true_frames(live)


def test_a_subscriber_before_the_first_frame_gets_every_frame_once(broker, stream_name):
    """Connected before any frame exists: there is no history, and nothing comes twice."""
    with framebus.Publisher(stream_name, shape=SHAPE, slots=32, time_base=TIME_BASE) as pub, \
            framebus.Subscriber(stream_name, mode="all") as sub:
        wait_until(lambda: pub.subscribers, 10, what="the subscriber to connect")
        time.sleep(0.2)  # and its subscription to reach the publisher
        for _ in range(20):
            publish(pub)
            time.sleep(0.002)
        got = drain(sub, 0.5)
        assert [f.seq for f in got] == list(range(20)) and sub.dropped == 0
        assert_true_frames(got)


def test_a_restarted_producer_s_first_frames_are_not_lost(broker, stream_name):
    """A new ring mid-stream has a history too: the subscriber reconnects to the new
    producer's socket some 100 ms after it binds, and still gets its frame 0 first."""
    with framebus.Subscriber(stream_name, mode="all") as sub:
        with framebus.Publisher(stream_name, shape=SHAPE, slots=32, time_base=TIME_BASE) as a:
            old = until_received(a, sub)
            old += drain(sub)
            a_published = a.seq
        with framebus.Publisher(stream_name, shape=SHAPE, slots=32, time_base=TIME_BASE) as b:
            b_token = b._ring.token
            for _ in range(3):
                publish(b)
            new = until_received(b, sub)
            new += drain(sub)
            # The old producer's frames all came before; none of them after the new one's.
            assert [f.seq for f in old] == list(range(a_published))
            assert all(f.token == b_token for f in new)
            assert [f.seq for f in new] == list(range(b.seq))
            assert_true_frames(new)


def test_a_new_path_to_the_same_ring_returns_no_frame_twice(broker, stream_name):
    """A Subscriber that opens a new path to a ring it read before (as when it comes back
    from the network, or its socket failed) takes the ring's history again, but only the
    frames it has not returned."""
    with framebus.Publisher(stream_name, shape=SHAPE, slots=32, time_base=TIME_BASE) as pub, \
            framebus.Subscriber(stream_name, mode="all") as sub:
        for _ in range(5):
            publish(pub)
        before = until_received(pub, sub)
        before += drain(sub)
        assert [f.seq for f in before] == list(range(pub.seq))
        sub._path.close()
        sub._path = None  # the next recv() asks the broker and opens a new path
        after = until_received(pub, sub)
        after += drain(sub)
        assert [f.seq for f in after] == list(range(before[-1].seq + 1, pub.seq))
        assert all(f.skipped == 0 for f in after) and sub.dropped == 0
        assert_true_frames(after)


def test_latest_mode_takes_no_history(broker, stream_name):
    k = 5
    with framebus.Publisher(stream_name, shape=SHAPE, slots=32, time_base=TIME_BASE) as pub:
        for _ in range(k):
            publish(pub)
        with framebus.Subscriber(stream_name) as sub:
            first = until_received(pub, sub, _recv)
            assert first.seq >= k, "latest stays latest: never a frame from before"
            for _ in range(10):
                publish(pub)
            time.sleep(0.2)
            newest = sub.recv(timeout=2)
            assert newest.seq == pub.seq - 1 and newest.skipped > 0


def test_a_reader_started_with_a_file_decoder_gets_frame_0(procs, broker, stream_name,
                                                           tmp_path):
    """The slow joiner, measured: a decoder's first frames go out before any subscriber's
    connection is complete; from the ring's history, the first frame returned is frame 0."""
    video = media.encode(tmp_path / "clip.mp4", 30, 320, 240, fps=25)
    worker = procs.framebus("-v", "decode", str(video), "--name", stream_name)
    got: list[tuple[framebus.Frame, int]] = []
    with framebus.Subscriber(stream_name, mode="all") as sub:
        end = time.monotonic() + 20
        while (not got or got[-1][1] < 29) and time.monotonic() < end:
            frame = _recv(sub, 0.5)
            if frame is not None:
                got.append((frame, media.marker(frame.copy())))
    seen = [index for _, index in got]
    assert seen == list(range(30)), seen
    assert [f.seq for f, _ in got] == list(range(30))
    assert got[0][0].time == 0 and sub.dropped == 0
    assert worker.wait(10) == 0


def _recv(sub: framebus.Subscriber, timeout: float = 0.05) -> framebus.Frame | None:
    try:
        return sub.recv(timeout=timeout)
    except framebus.Timeout:
        return None
