"""The local wake-up (framebus/shm/wake.py): one eventfd per reader, bumped by the writer
after each frame. No wake-up is lost however the writer races readers going to sleep; a
reader killed while it waits costs the writer nothing and its registration goes; what a
SIGKILLed writer leaves is reclaimed; the socket takes only the right ring's readers."""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import time

import numpy as np
import pytest
from conftest import TESTS, wait_until
from test_clients import Lines

import framebus
from framebus.leftovers import reclaim_stale
from framebus.shm import wake

SHAPE = (16, 16, 3)


def _is_eventfd(fd: int) -> bool:
    try:
        return os.readlink(f"/proc/self/fd/{fd}") == "anon_inode:[eventfd]"
    except OSError:
        return False


def woken(sub: framebus.Subscriber) -> bool:
    return getattr(sub._path, "_woken", None) is not None


def publish_until(pub: framebus.Publisher, predicate, timeout: float = 10, what: str = ""):
    def step():
        pub.publish(np.zeros(SHAPE, np.uint8))
        return predicate()
    return wait_until(step, timeout, interval=0.005, what=what)


@pytest.mark.slow
def test_no_wakeup_is_lost_when_a_flat_out_writer_races_sleeping_readers(procs, broker,
                                                                         stream_name, tmp_path):
    """A writer process in 20,000 rounds, each a flat-out burst then a wait for every reader
    to acknowledge the burst's last frame, against four reader processes (two "latest", two
    "all") that fall asleep on fileno() with a 10 s timeout as soon as they have acknowledged:
    the writer's next burst races them to sleep every round. No round stalls, no reader
    sleeps out a timeout (a lost wake-up would leave it asleep), and each sees every round."""
    script, acks, rounds = str(TESTS / "wake_race.py"), str(tmp_path / "acks"), 20000
    modes = ("latest", "all", "latest", "all")
    writer = procs.start(script, "writer", stream_name, str(rounds), str(len(modes)), acks,
                         stdin=subprocess.PIPE)
    readers = [procs.start(script, "reader", stream_name, mode, acks, str(rounds))
               for mode in modes]
    outs = [Lines(r.stdout) for r in readers]
    for out in outs:
        out.wait_for("woken", 30)
    writer.stdin.write("go\n")
    writer.stdin.flush()
    written = json.loads(Lines(writer.stdout).wait_for('"stalls"', 120))
    results = [json.loads(out.wait_for('"rounds"', 30)) for out in outs]
    writer.stdin.write("done\n")
    writer.stdin.flush()
    print(written, results)
    assert written["stalls"] == 0, written
    for result in results:
        assert result["woken"], result
        assert result["timeouts"] == 0, f"a lost wake-up: {result}"
        assert result["rounds"] == rounds, result


def test_readers_killed_while_they_wait_cost_the_writer_nothing(procs, broker, stream_name):
    """Three reader processes woken by the ring, SIGKILLed while they sleep: the writer's
    listener retires their eventfds at once, it keeps publishing, and holds no fd of theirs."""
    with framebus.Publisher(stream_name, shape=SHAPE, slots=16) as pub:
        readers = [procs.consumer(stream_name, "--frames", "100000", "--timeout", "60")
                   for _ in range(3)]
        publish_until(pub, lambda: pub._wake.readers == 3, 20, "three woken readers")
        theirs = pub._wake.fds
        for reader in readers:
            procs.stop(reader, signal.SIGKILL)
        wait_until(lambda: pub._wake.readers == 0, 5, what="the dead readers retired")
        started = time.perf_counter()
        for _ in range(200):
            pub.publish(np.zeros(SHAPE, np.uint8))
        assert time.perf_counter() - started < 2.0
        assert not pub._wake._retired and not pub._wake._conns  # closed by the writer
        assert all(not _is_eventfd(fd) for fd in theirs)


def test_a_sigkilled_writers_wake_socket_is_reclaimed_and_its_reader_follows_the_next(
        procs, broker, stream_name):
    path = wake.wake_file(stream_name)
    first = procs.framebus("testsrc", stream_name, "--size", "16x16", "--fps", "200")
    with framebus.Subscriber(stream_name) as sub:
        wait_until(lambda: sub.try_recv() is not None and woken(sub), 20, interval=0.01,
                   what="a reader woken by the ring")
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
        procs.stop(first, signal.SIGKILL)
        assert path.exists()
        wait_until(lambda: sub.try_recv() is None and not woken(sub), 5, interval=0.01,
                   what="the reader to hear its writer is gone")
        reclaim_stale()
        assert not path.exists()
        procs.framebus("testsrc", stream_name, "--size", "32x16", "--fps", "200")
        wait_until(lambda: (f := sub.try_recv()) is not None and f.shape == (16, 32, 3)
                   and woken(sub), 20, interval=0.01, what="woken by the new writer")


def test_the_wake_socket_takes_only_an_eventfd_for_the_right_ring(broker, stream_name):
    with framebus.Publisher(stream_name, shape=SHAPE) as pub:
        path = str(wake.wake_file(stream_name))

        def offer(message: bytes, fd: int) -> bytes:
            with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as conn:
                conn.settimeout(5)
                conn.connect(path)
                socket.send_fds(conn, [message], [fd])
                return conn.recv(16)

        efd = os.eventfd(0, os.EFD_NONBLOCK)
        read_end, write_end = os.pipe()
        try:
            assert offer(wake.HELLO + os.urandom(16), efd) == wake.REFUSED  # another ring
            assert offer(wake.HELLO + pub._ring.token, read_end) == wake.REFUSED  # no eventfd
            assert offer(b"garbage", efd) == wake.REFUSED
            assert offer(wake.HELLO + pub._ring.token, efd) == wake.OK
            wait_until(lambda: pub._wake.readers == 0, 5, what="the closed one retired")
        finally:
            for fd in (efd, read_end, write_end):
                os.close(fd)
        pub.publish(np.zeros(SHAPE, np.uint8))


def test_a_new_generation_ends_the_wakeup_and_the_reader_takes_the_new_rings(broker,
                                                                             stream_name):
    """reconfigure(): the writer ends its readers' connections; they come back through the
    new ring's descriptors, are woken by it, and lose none of its frames (mode "all")."""
    with framebus.Publisher(stream_name, shape=SHAPE, slots=32) as pub, \
            framebus.Subscriber(stream_name, mode="all") as sub:
        publish_until(pub, lambda: sub.try_recv() is not None and woken(sub), 10, "woken")
        while sub.try_recv() is not None:
            pass
        pub.reconfigure((8, 8, 3))
        start = pub.seq  # seq goes on across generations
        new = []
        for _ in range(20):
            pub.publish(np.zeros((8, 8, 3), np.uint8))
            time.sleep(0.01)
            while (f := sub.try_recv()) is not None:
                new.append(f)

        def more():
            pub.publish(np.zeros((8, 8, 3), np.uint8))
            while (f := sub.try_recv()) is not None:
                new.append(f)
            return woken(sub) and len(new) > 25
        wait_until(more, 10, interval=0.01, what="woken by the new ring")
        fresh = [f for f in new if f.token == pub._ring.token]
        assert [f.seq for f in fresh] == list(range(start, pub.seq))
        assert sub.dropped == 0 and sub.rejected == 0
