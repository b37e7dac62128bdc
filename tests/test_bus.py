"""The bus end to end: real broker, producer and consumer processes, real shared memory."""

import os
import signal
import time

import numpy as np
import pytest
from conftest import result_of, wait_until

import framebus
from framebus import config
from framebus.testsrc import TestPattern


def start_testsrc(procs, name, size="64x48", fps="100", *extra):
    return procs.framebus("testsrc", name, "--size", size, "--fps", fps, *extra)


def segment_exists(name):
    return os.path.exists("/dev/shm" + config.segment_name(name))


def stream_info(name):
    return next((s for s in framebus.streams() if s.name == name), None)


def test_many_subscribers_on_one_stream(procs, broker, stream_name):
    start_testsrc(procs, stream_name)
    consumers = [procs.consumer(stream_name, "--frames", "60") for _ in range(4)]
    results = [result_of(c) for c in consumers]
    for r in results:
        assert r["good"] == 60 and r["bad"] == 0
        assert r["seqs"] == sorted(r["seqs"])


def test_subscribers_see_only_their_own_stream(procs, broker, stream_name):
    a, b = stream_name + "a", stream_name + "b"
    start_testsrc(procs, a, "64x48")
    start_testsrc(procs, b, "32x24")
    ra, rb = (procs.consumer(n, "--frames", "30") for n in (a, b))
    ra, rb = result_of(ra), result_of(rb)
    assert ra["streams"] == [a] and rb["streams"] == [b]
    assert ra["good"] == rb["good"] == 30


def test_subscriber_started_before_its_producer(procs, broker, stream_name):
    consumer = procs.consumer(stream_name, "--frames", "20")
    time.sleep(1.5)
    assert consumer.poll() is None
    start_testsrc(procs, stream_name)
    r = result_of(consumer)
    assert r["good"] == 20 and r["bad"] == 0


def test_producer_sigkill_is_detected_reclaimed_and_a_restart_picked_up(procs, broker, stream_name):
    producer = start_testsrc(procs, stream_name)
    with framebus.Subscriber(stream_name) as sub:
        first = sub.recv(timeout=10)
        token = sub.info.token
        procs.stop(producer, signal.SIGKILL)
        killed = time.monotonic()
        wait_until(lambda: not stream_info(stream_name).alive, 5, what="the broker to mark it dead")
        assert time.monotonic() - killed < 2.5
        wait_until(lambda: not segment_exists(stream_name), 3, what="the dead ring to be reclaimed")
        with pytest.raises(framebus.Timeout):
            sub.recv(timeout=0.5)

        start_testsrc(procs, stream_name, "80x60")
        frame = sub.recv(timeout=10)
        assert frame.shape == (60, 80, 3) and frame.seq < first.seq + 1000
        assert TestPattern(frame.shape).matches(frame.copy(), frame.seq)
        assert sub.info.token != token and stream_info(stream_name).alive


def test_a_second_producer_for_a_live_name_is_refused(procs, broker, stream_name):
    start_testsrc(procs, stream_name)
    wait_until(lambda: stream_info(stream_name), 10, what="the stream to register")
    with pytest.raises(framebus.StreamInUse):
        framebus.Publisher(stream_name, shape=(4, 4, 3))
    second = start_testsrc(procs, stream_name)
    assert second.wait(10) != 0
    assert "in use" in second.stderr.read()


def test_frames_flow_while_the_broker_is_down_and_everyone_comes_back(procs, broker, stream_name):
    start_testsrc(procs, stream_name)
    with framebus.Subscriber(stream_name) as sub:
        sub.recv(timeout=10)
        broker.kill()
        before = sub.received
        for _ in range(30):  # 100 fps: ~0.3 s of frames with no broker at all
            frame = sub.recv(timeout=2)
        assert sub.received == before + 30 and frame.valid()
        broker.start()
        wait_until(lambda: stream_info(stream_name), 5, what="the producer to re-register")
        assert sub.recv(timeout=2).valid()


def test_subscriber_follows_a_producer_that_moves_while_the_broker_was_away(procs, broker,
                                                                           stream_name):
    """The broker restarts empty; a new producer registers; the old subscriber re-resolves."""
    producer = start_testsrc(procs, stream_name)
    with framebus.Subscriber(stream_name) as sub:
        sub.recv(timeout=10)
        broker.kill()
        procs.stop(producer, signal.SIGKILL)
        broker.start()
        start_testsrc(procs, stream_name, "32x24")
        # The dead producer's last descriptor may still be queued: that frame is whole and
        # was the newest until the new producer's first; after it, only the new one's.
        frames = [sub.recv(timeout=10)]
        if frames[0].shape != (24, 32, 3):
            frames.append(sub.recv(timeout=10))
        assert frames[-1].shape == (24, 32, 3)
        assert all(f.shape == (48, 64, 3) for f in frames[:-1])


def test_latest_mode_gives_a_slow_reader_the_newest_frame(broker, stream_name):
    image = np.zeros((8, 8, 3), np.uint8)
    with framebus.Publisher(stream_name, shape=image.shape, slots=4) as pub, \
            framebus.Subscriber(stream_name) as sub:
        wait_until(lambda: _deliver(pub, sub, image), 5, what="subscription")
        for _ in range(50):
            pub.publish(image)
        newest = pub.seq - 1
        time.sleep(0.2)
        frame = sub.recv(timeout=2)
        assert frame.seq == newest
        assert frame.skipped > 0 and sub.dropped >= frame.skipped


def test_all_mode_delivers_in_order_and_reports_gaps(broker, stream_name):
    image = np.zeros((8, 8, 3), np.uint8)
    with framebus.Publisher(stream_name, shape=image.shape, slots=64) as pub, \
            framebus.Subscriber(stream_name, mode="all") as sub:
        wait_until(lambda: _deliver(pub, sub, image), 5, what="subscription")
        _drain(sub)  # the frames published while subscribing come first, from the ring
        start = pub.seq
        for i in range(40):
            image[...] = i
            pub.publish(image)
        got = [sub.recv(timeout=2) for _ in range(40)]
        assert [f.seq for f in got] == list(range(start, start + 40))
        assert [int(f.array[0, 0, 0]) for f in got] == list(range(40))
        assert all(f.skipped == 0 for f in got)
        # Frames that fall out of the ring before they are read are gaps, not stale frames.
        for _ in range(100):
            pub.publish(image)
        time.sleep(0.2)
        frame = sub.recv(timeout=2)
        assert frame.seq >= pub.seq - 64 and frame.skipped > 0


def _drain(sub):
    try:
        while True:
            sub.recv(timeout=0.1)
    except framebus.Timeout:
        pass


def _deliver(pub, sub, image):
    pub.publish(image)
    try:
        sub.recv(timeout=0.1)
        return True
    except framebus.Timeout:
        return False


def test_new_generation_on_geometry_change(broker, stream_name):
    with framebus.Publisher(stream_name, shape=(8, 8, 3)) as pub, \
            framebus.Subscriber(stream_name) as sub:
        wait_until(lambda: _deliver(pub, sub, np.zeros((8, 8, 3), np.uint8)), 5,
                   what="subscription")
        pub.publish(np.full((8, 8, 3), 1, np.uint8))
        old = sub.recv(timeout=2)
        pub.reconfigure((16, 32, 3))
        pub.publish(np.full((16, 32, 3), 2, np.uint8))
        new = sub.recv(timeout=2)
        assert new.shape == (16, 32, 3) and new.generation == old.generation + 1
        assert (new.array == 2).all()
        assert (old.array == 1).all(), "a frame of the old generation stays readable"
        wait_until(lambda: stream_info(stream_name).shape == (16, 32, 3), 3,
                   what="the broker to learn the new geometry")


def test_ls_and_streams_show_live_figures(procs, broker, stream_name):
    start_testsrc(procs, stream_name, "64x48", "50")
    info = wait_until(lambda: (i := stream_info(stream_name)) and i.fps > 0 and i, 5,
                      what="figures from the heartbeat")
    assert info.alive and info.shape == (48, 64, 3) and info.fmt == "bgr24"
    assert 30 < info.fps < 70 and info.age < 1.0
    ls = procs.framebus("ls")
    out, err = ls.communicate(timeout=20)
    assert ls.returncode == 0, err
    assert stream_name in out and "64x48x3" in out and "alive" in out


def test_recv_times_out_with_a_clear_error(broker, stream_name):
    with framebus.Subscriber(stream_name) as sub, \
            pytest.raises(framebus.Timeout, match=stream_name):
        sub.recv(timeout=0.3)


CUT_SHORT = """
import os, signal, sys, threading, framebus
signal.signal(signal.SIGTERM, lambda *_: sys.exit(3))
# No broker answers: registering waits half a second, and a SIGTERM lands meanwhile.
threading.Timer(0.2, lambda: os.kill(os.getpid(), signal.SIGTERM)).start()
framebus.Publisher(sys.argv[1], shape=(4, 4, 3))
"""


def test_a_publisher_interrupted_in_its_constructor_leaves_no_ring(procs, broker_address,
                                                                   stream_name):
    proc = procs.start("-c", CUT_SHORT, stream_name)
    proc.communicate(timeout=20)
    assert proc.returncode == 3, "the signal interrupted the constructor"
    assert not segment_exists(stream_name)
