"""The network path on one host: a real relay process serving real subscribers over loopback
TCP, side by side with shared-memory subscribers of the same stream. (Two hosts, keys and
cut links: tests/test_two_hosts.py.)"""

import os
import signal

import msgpack
import pytest
import zmq
from conftest import free_port, result_of, wait_until

import framebus
from framebus.protocol import relay as wire
from framebus.testsrc import TestPattern


def start_testsrc(procs, name, size="64x48", fps="100"):
    return procs.framebus("testsrc", name, "--size", size, "--fps", fps)


class RelayProcess:
    def __init__(self, procs, endpoint):
        self.procs, self.endpoint = procs, endpoint
        self.proc = None

    def start(self):
        self.proc = self.procs.framebus("relay", "--bind", self.endpoint)
        wait_until(self.registered, 10, what="the relay to register with the broker")
        return self

    def registered(self):
        with framebus.BrokerClient() as client:
            return any(r["endpoint"] == self.endpoint and r["alive"] for r in client.relays())


@pytest.fixture
def relay(procs, broker):
    return RelayProcess(procs, f"tcp://127.0.0.1:{free_port()}").start()


def test_local_and_remote_subscribers_of_one_stream_side_by_side(procs, relay, stream_name):
    start_testsrc(procs, stream_name)
    consumers = {
        "shm": procs.consumer(stream_name, "--frames", "60"),
        "tcp": procs.consumer(stream_name, "--frames", "60", "--transport", "tcp"),
        "jpeg": procs.consumer(stream_name, "--frames", "60", "--transport", "tcp",
                               "--codec", "jpeg", "--quality", "95", "--min-psnr", "25"),
    }
    results = {kind: result_of(proc) for kind, proc in consumers.items()}
    for kind, r in results.items():
        assert r["good"] == 60 and r["bad"] == 0, (kind, r)
        assert r["seqs"] == sorted(r["seqs"])
    assert results["shm"]["paths"] == ["shm"]
    assert results["tcp"]["paths"] == ["tcp"] and results["jpeg"]["paths"] == ["tcp"]
    assert results["tcp"]["worst_psnr"] == float("inf"), "raw frames arrive bit-exact"


def test_a_slow_remote_reader_gets_the_newest_frame_and_slows_nobody(procs, relay, stream_name):
    start_testsrc(procs, stream_name, "64x48", "50")
    slow = procs.consumer(stream_name, "--seconds", "4", "--transport", "tcp", "--delay", "0.5")
    fast = procs.consumer(stream_name, "--seconds", "4", "--transport", "tcp")
    local = procs.consumer(stream_name, "--seconds", "4")
    slow, fast, local = result_of(slow), result_of(fast), result_of(local)
    assert slow["bad"] == fast["bad"] == local["bad"] == 0
    assert fast["fps"] > 40 and local["fps"] > 40, (fast["fps"], local["fps"])
    # At 2 frames a second of a 50 fps stream, every frame it gets is ~25 past the last.
    gaps = [b - a for a, b in zip(slow["seqs"], slow["seqs"][1:])]
    assert len(slow["seqs"]) >= 6 and min(gaps) >= 15, gaps
    assert slow["dropped"] >= sum(g - 1 for g in gaps)


def test_forced_transports_say_why_they_cannot_reach_a_stream(procs, broker, stream_name):
    start_testsrc(procs, stream_name)
    with framebus.Subscriber(stream_name, transport="tcp") as sub, \
            pytest.raises(framebus.Timeout, match="no relay serves it"):
        sub.recv(timeout=1.5)
    with pytest.raises(ValueError, match="needs shared memory"):
        framebus.Subscriber(stream_name, transport="tcp", mode="all")
    with pytest.raises(ValueError, match="codec"):
        framebus.Subscriber(stream_name, codec="png")


def test_remote_subscriber_survives_relay_and_producer_restarts(procs, relay, stream_name):
    producer = start_testsrc(procs, stream_name)
    with framebus.Subscriber(stream_name, transport="tcp") as sub:
        sub.recv(timeout=10)
        procs.stop(relay.proc, signal.SIGKILL)
        with pytest.raises(framebus.Timeout):
            for _ in range(100):
                sub.recv(timeout=0.5)
        relay.start()
        frame = sub.recv(timeout=10)
        assert TestPattern(frame.shape).matches(frame.array, frame.seq)

        procs.stop(producer, signal.SIGKILL)
        start_testsrc(procs, stream_name, "32x24")
        frame = wait_until(lambda: (f := _recv_or_none(sub)) and f.shape == (24, 32, 3) and f,
                           15, what="frames of the restarted producer")
        assert TestPattern(frame.shape).matches(frame.array, frame.seq)


def _recv_or_none(sub):
    try:
        return sub.recv(timeout=0.5)
    except framebus.Timeout:
        return None


def test_relay_refuses_malformed_requests_and_keeps_serving(procs, relay, stream_name):
    start_testsrc(procs, stream_name)
    context = zmq.Context()
    try:
        bad = context.socket(zmq.DEALER)
        bad.linger = 0
        bad.connect(relay.endpoint)
        garbage = [b"\xc1", msgpack.packb([1, 2]), msgpack.packb({"v": 1, "op": "want"}),
                   msgpack.packb({"v": 1, "op": "want", "stream": "../etc", "codec": "raw",
                                  "quality": 90, "token": None, "after": -1}),
                   msgpack.packb({"v": 1, "op": "want", "stream": stream_name, "codec": "raw",
                                  "quality": 900, "token": None, "after": -1}),
                   b"x" * 4096]
        for message in garbage[:-1]:
            bad.send(message)
            assert bad.poll(5000), "every malformed request gets an answer"
            kind, body = bad.recv_multipart()
            assert kind == wire.ERROR
            assert msgpack.unpackb(body)["code"] == "bad_request"
        bad.send(garbage[-1])  # oversized: the relay drops the connection, not its memory
        bad.send_multipart([b"two", b"parts"])
        with framebus.Subscriber(stream_name, transport="tcp") as sub:
            frame = sub.recv(timeout=10)
            assert TestPattern(frame.shape).matches(frame.array, frame.seq)
    finally:
        context.destroy(linger=0)


def test_a_local_subscriber_waits_for_its_restarting_producer_rather_than_leave_for_the_relay(
        procs, relay, stream_name):
    """While a SIGKILLed producer's ring is gone and its successor not yet up, the stream is
    still this host's: an auto subscriber must not wander off to the relay (which beyond
    loopback would need keys it may not have), and must be back on shared memory after."""
    producer = start_testsrc(procs, stream_name)
    segment = "/dev/shm" + framebus.config.segment_name(stream_name)
    with framebus.Subscriber(stream_name) as sub:
        sub.recv(timeout=10)
        assert sub.path == "shm"
        procs.stop(producer, signal.SIGKILL)
        paths = set()

        def ring_reclaimed():
            try:
                sub.recv(timeout=0.2)
            except framebus.Timeout:
                pass
            paths.add(sub.path)
            return not os.path.exists(segment)

        wait_until(ring_reclaimed, 10, interval=0, what="the broker to reclaim the dead ring")
        for _ in range(10):  # a while with no ring at all: the subscriber asks the broker again
            ring_reclaimed()
        start_testsrc(procs, stream_name)
        frame = sub.recv(timeout=10)
        assert TestPattern(frame.shape).matches(frame.copy(), frame.seq)
        assert paths | {sub.path} == {"shm"}, paths


def test_the_relay_never_sends_a_subscriber_the_same_frame_twice(procs, relay, stream_name):
    """Two credits of a subscriber that had nothing yet (no token), the second arriving after
    the first was answered, while the newest frame stays the same: the first fetches it, the
    second must wait for the next one. (Credits cross frames whenever a ring is replaced.)"""
    start_testsrc(procs, stream_name, fps="2")
    wait_until(lambda: any(s.name == stream_name for s in framebus.streams()), 10,
               what="the stream to register")
    context = zmq.Context()
    dealer = context.socket(zmq.DEALER)
    dealer.linger = 0
    dealer.connect(relay.endpoint)
    try:
        dealer.send(wire.Want(stream_name).pack())
        first = _next_frame(dealer, 10_000, "no frame for the first credit")
        dealer.send(wire.Want(stream_name).pack())  # sent, say, before that frame arrived
        second = _next_frame(dealer, 5_000, "no frame for the second credit")
        assert (second.token, second.seq) != (first.token, first.seq)
        assert second.seq > first.seq
    finally:
        dealer.close()
        context.term()


def _next_frame(dealer, timeout_ms, why):
    """The descriptor of the next frame the relay sends, past the checks of slot frames."""
    while True:
        assert dealer.poll(timeout_ms), why
        parts = dealer.recv_multipart()
        if parts[0] != wire.CHECK:
            assert parts[0] in (wire.FRAME, wire.SLOT), parts[0]
            return framebus.protocol.descriptor.Descriptor.unpack(parts[1])
