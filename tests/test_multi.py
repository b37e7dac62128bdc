"""Many streams in one consumer (framebus.MultiSubscriber) and framebus.wait(), against real
producer processes and real rings: fairness, patterns, streams that stop and come back."""

from __future__ import annotations

import collections
import os
import signal
import time

import pytest
from conftest import free_port, wait_until

import framebus


def start_testsrc(procs, name: str, fps: float, size: str = "160x120"):
    return procs.framebus("testsrc", name, "--size", size, "--fps", str(fps))


def gather(subs, seconds: float, work: float = 0.0) -> dict[str, list]:
    """(seq, skipped, token) of every frame recv() returns for *seconds*, by stream; each
    frame followed by *work* seconds of (sleeping) work."""
    got: dict[str, list] = collections.defaultdict(list)
    end = time.monotonic() + seconds
    while (left := end - time.monotonic()) > 0:
        try:
            frame = subs.recv(timeout=left)
        except framebus.Timeout:
            break
        got[frame.stream].append((frame.seq, frame.skipped, frame.token))
        if work:
            time.sleep(work)
    return got


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


# -- fairness ---------------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("mode, busy_fps, busy_slots", [
    ("latest", 0, 8),  # flat out
    ("all", 0, 8),  # flat out: most of its descriptors are lapped before they are read
    ("all", 2000, 64),  # its frames queue up whole: it always has one ready
])
def test_a_busy_stream_never_starves_the_slow_ones(procs, broker, stream_name, mode, busy_fps,
                                                   busy_slots):
    """One producer publishes tiny frames faster than the consumer (1 ms of work a frame)
    takes them; four others at 20 fps: every frame of the slow ones arrives, in order, none
    skipped, while the busy one gets its share too. (The last case fails when the ready
    queue serves a stream until it runs dry.)"""
    busy = f"{stream_name}-busy"
    slow = [f"{stream_name}-slow{i}" for i in range(4)]
    procs.framebus("testsrc", busy, "--size", "32x24", "--fps", str(busy_fps),
                   "--slots", str(busy_slots))
    for name in slow:
        start_testsrc(procs, name, 20)
    with framebus.MultiSubscriber([busy, *slow], mode=mode) as subs:
        wait_until(lambda: set(gather(subs, 0.2)) >= set(slow)
                   and subs.subscribers[busy].connected, 15, what="every stream")
        before = {name: subs.subscribers[name].dropped for name in slow}
        busy_sub = subs.subscribers[busy]
        busy_before = busy_sub.received + busy_sub.dropped
        got = gather(subs, 4.0, work=0.001)
        # In mode latest a frame not taken before the next replaces it: a stall of the test
        # process under load (50 ms) may cost one. Starving, the slow ones would lose most.
        spare = 0 if mode == "all" else 3
        for name in slow:
            seqs = [seq for seq, _, _ in got[name]]
            assert len(seqs) >= 60, (name, len(seqs))  # 20 fps for 4 s, minus start-up
            lost = seqs[-1] - seqs[0] + 1 - len(seqs)
            assert lost <= spare, (name, lost, seqs)
            assert sum(skipped for _, skipped, _ in got[name]) == lost, name
            assert subs.subscribers[name].dropped - before[name] <= spare, name
        # The busy stream is served too: its frames taken, or (in mode all, a queue of
        # descriptors a flat-out producer laps in its 8 slots) counted as lapped.
        served = busy_sub.received + busy_sub.dropped - busy_before
        assert served > 2 * max(len(got[n]) for n in slow), (served, len(got[busy]))


def test_each_stream_keeps_its_own_mode_and_drops(procs, broker, stream_name):
    """In mode latest a reader slower than a stream skips to its newest frame, stream by
    stream: the drops are counted by that stream's Subscriber and its frame.skipped."""
    names = [f"{stream_name}-{i}" for i in range(2)]
    for name in names:
        start_testsrc(procs, name, 50)
    with framebus.MultiSubscriber(names) as subs:
        wait_until(lambda: set(gather(subs, 0.2)) == set(names), 15, what="both streams")
        skipped = collections.Counter()
        end = time.monotonic() + 2.0
        while time.monotonic() < end:
            frame = subs.recv(timeout=1.0)
            skipped[frame.stream] += frame.skipped
            time.sleep(0.05)  # 20 frames/s of 100 published
        for name in names:
            assert skipped[name] > 20, skipped
            assert subs.subscribers[name].dropped >= skipped[name]


# -- patterns ---------------------------------------------------------------------------------

def test_a_pattern_picks_up_a_stream_started_later(procs, broker, stream_name):
    start_testsrc(procs, f"{stream_name}-other", 20)
    with framebus.MultiSubscriber([f"{stream_name}-lobby-*"], discover_every=0.3) as subs:
        assert subs.subscribers == {}
        with pytest.raises(framebus.Timeout):
            subs.recv(timeout=1.0)
        late = f"{stream_name}-lobby-1"
        start_testsrc(procs, late, 20)
        started = time.monotonic()
        frame = subs.recv(timeout=10.0)
        assert frame.stream == late
        assert time.monotonic() - started < 5.0
        assert list(subs.subscribers) == [late]  # the other stream matches no pattern


def test_names_and_patterns_together(procs, broker, stream_name):
    exact, lobby = f"{stream_name}-cam", f"{stream_name}-lobby-a"
    start_testsrc(procs, lobby, 20)
    with framebus.MultiSubscriber([exact, f"{stream_name}-lobby-?"]) as subs:
        assert list(subs.subscribers) == [exact]  # followed before its producer exists
        start_testsrc(procs, exact, 20)
        got = wait_until(lambda: set(gather(subs, 0.3)) >= {exact, lobby} or None, 15,
                         what="frames of both")
        assert got
        assert sorted(subs.subscribers) == sorted([exact, lobby])


@pytest.mark.parametrize("bad", ["", "cam 1", "../x*", "a" * 200, "cam/*"])
def test_bad_names_and_patterns_are_refused(bad):
    with pytest.raises(framebus.InvalidName):
        framebus.MultiSubscriber([bad])


def test_no_streams_is_refused():
    with pytest.raises(ValueError):
        framebus.MultiSubscriber([])


# -- streams that stop and come back ------------------------------------------------------------

@pytest.mark.slow
def test_a_stream_that_stops_and_comes_back_is_followed(procs, broker, stream_name):
    steady, flaky = f"{stream_name}-steady", f"{stream_name}-flaky"
    start_testsrc(procs, steady, 20)
    first = start_testsrc(procs, flaky, 20)
    with framebus.MultiSubscriber([steady, flaky]) as subs:
        wait_until(lambda: set(gather(subs, 0.2)) == {steady, flaky}, 15, what="both streams")
        token = gather(subs, 0.5)[flaky][-1][2]
        procs.stop(first, signal.SIGKILL)
        got = gather(subs, 1.0)
        assert len(got[steady]) >= 10  # the other stream goes on meanwhile
        start_testsrc(procs, flaky, 20)

        def back():
            frames = gather(subs, 0.3)[flaky]
            return any(t != token for _, _, t in frames)
        wait_until(back, 15, interval=0, what="frames of the restarted producer")


# -- wait() -------------------------------------------------------------------------------------

def test_wait_returns_the_subscribers_with_a_frame(procs, broker, stream_name):
    live, idle = f"{stream_name}-live", f"{stream_name}-idle"
    start_testsrc(procs, live, 20)
    with framebus.Subscriber(live) as a, framebus.Subscriber(idle) as b:
        assert wait_until(lambda: framebus.wait([a, b], timeout=1.0), 15, what="a ready") == [a]
        started = time.monotonic()
        frame = a.try_recv()  # the frame wait() found is kept for it
        assert frame is not None and frame.stream == live and time.monotonic() - started < 0.05
        assert framebus.wait([b], timeout=0.5) == []
        assert framebus.wait([a, a, b], timeout=1.0) == [a]


def test_wait_takes_multisubscribers_too(procs, broker, stream_name):
    start_testsrc(procs, f"{stream_name}-m", 20)
    with framebus.MultiSubscriber([f"{stream_name}-*"]) as subs:
        assert framebus.wait([subs], timeout=10.0) == [subs]
        assert subs.recv(timeout=0).stream == f"{stream_name}-m"


def test_closing_releases_every_descriptor(procs, broker, stream_name):
    names = [f"{stream_name}-{i}" for i in range(4)]
    for name in names:
        start_testsrc(procs, name, 20)
    before = open_fds()
    for _ in range(3):
        with framebus.MultiSubscriber([*names, f"{stream_name}-x*"]) as subs:
            wait_until(lambda: set(gather(subs, 0.2)) == set(names), 15, what="every stream")
    assert open_fds() <= before


def test_a_broker_that_is_away_holds_no_frame_back(procs, broker, stream_name):
    """Patterns listed from a broker that does not answer: recv() still returns the frames
    of the named streams on time, and times out on time, never raising for the broker."""
    start_testsrc(procs, stream_name, 20)
    with framebus.Subscriber(stream_name) as probe:  # the stream is up and registered
        probe.recv(timeout=15.0)
    nowhere = f"tcp://127.0.0.1:{free_port()}"
    with framebus.MultiSubscriber([f"{stream_name}-*"], broker=nowhere,
                                  discover_every=0.1) as subs:
        started = time.monotonic()
        with pytest.raises(framebus.Timeout):
            subs.recv(timeout=1.0)
        assert time.monotonic() - started < 1.5
    with framebus.MultiSubscriber([stream_name, f"{stream_name}-*"],
                                  discover_every=0.1) as subs:
        subs.recv(timeout=15.0)
        broker.kill()
        gaps, last = [], time.monotonic()
        end = last + 2.0
        while time.monotonic() < end:
            subs.recv(timeout=1.0)
            gaps.append(time.monotonic() - last)
            last = time.monotonic()
        assert len(gaps) >= 30 and max(gaps) < 0.25, (len(gaps), max(gaps))


def test_wait_needs_subscribers():
    with pytest.raises(ValueError):
        framebus.wait([])
