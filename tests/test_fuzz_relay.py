"""Hostile input (framebus/testing/hostile.py), fuzzed against a real relay process: every
message gets a frame of a real stream, or is refused with a reason that is also logged, or is cut
by ZeroMQ for its size, never left unanswered; the relay neither stops, stalls nor grows without
bound (threads, feeds); a remote reader of a real stream keeps getting it, intact, meanwhile."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import msgpack
import pytest
import zmq
from conftest import free_port, wait_until
from fuzzing import FUZZ, Watch, listed_alive, logged, register_fake, start_service, start_testsrc
from hypothesis import given

from framebus import BrokerClient, config
from framebus.names import topic
from framebus.protocol import relay as wire
from framebus.protocol.descriptor import Descriptor
from framebus.remote.relay import MAX_FEEDS
from framebus.shm import Geometry, RingWriter
from framebus.testing import hostile
from framebus.testing.probers import ANSWERED, CUT, FINE, REFUSED, RelayProber, oversized

RELAY_CODES = {"bad_request", "not_found", "full", "unsupported"}


def start_relay(procs, endpoint: str, log: Path):
    proc = start_service(procs, log, "relay", "--bind", endpoint)

    def registered():
        with BrokerClient() as client:
            return any(r["endpoint"] == endpoint and r["alive"] for r in client.relays())

    wait_until(registered, 10, what="the relay to register")
    return proc


def threads_of(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("Threads:")))


@pytest.fixture
def broker(trusting_broker):
    """These tests register fake streams of this host, with no rings behind them."""
    return trusting_broker


@pytest.fixture
def relay(procs, broker, tmp_path):
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    log = tmp_path / "relay.log"
    return endpoint, start_relay(procs, endpoint, log), log


def test_the_relay_refuses_garbage_with_a_logged_reason_and_keeps_serving(
        procs, relay, stream_name):
    """Every message gets a frame of the real stream or a refusal with a reason (also in the
    relay's log), or is cut for its size; the relay answers after each and starts no thread
    for names nobody publishes; a remote reader of the real stream keeps getting it, intact."""
    endpoint, relay_proc, log = relay
    start_testsrc(procs, stream_name)
    refusals: list[str] = []
    with Watch(stream_name, "tcp") as watch, RelayProber(endpoint) as prober:
        threads = threads_of(relay_proc.pid)

        @FUZZ
        @given(hostile.relay_messages((stream_name,)))
        def fuzz(message: list[bytes]) -> None:
            outcome = prober.probe(message)
            assert outcome in FINE, (outcome, [part[:64] for part in message])
            assert (outcome == CUT) == oversized(message, prober.limit), outcome
            if outcome == REFUSED:
                assert prober.reply["code"] in RELAY_CODES, prober.reply
                refusals.append(prober.reply["error"])
            elif outcome == ANSWERED and "frame" in prober.reply:
                frame = Descriptor.unpack(prober.reply["frame"])
                assert frame.stream == stream_name, frame  # only what exists is served
            assert prober.alive(), "the relay stopped answering"

        fuzz()
        # Wants for names nobody publishes start no reading threads (a feed and a ZeroMQ
        # context each): the relay holds what it did before the fuzzing.
        assert threads_of(relay_proc.pid) <= threads + 2, (threads, threads_of(relay_proc.pid))
        watch.check()
    assert relay_proc.poll() is None, "the relay died"
    assert any("no stream named" in r for r in refusals), "no want of a missing stream refused"
    unlogged = [reason for reason in refusals if not logged(log, reason)]
    assert not unlogged, f"{len(unlogged)} refusals without their reason in the log: {unlogged[:3]}"


def _want(stream: str, codec: str = "raw") -> bytes:
    return wire.Want(stream, codec).pack()


def test_the_relay_reads_only_this_hosts_streams_and_a_bounded_number(procs, relay, broker,
                                                                      stream_name):
    """A want of a stream the broker does not know on this host is refused not_found, at
    once and with no thread started; one the broker learnt a moment ago is served (and one
    whose version is not the int 1 refused); beyond MAX_FEEDS streams wanted at once, a
    newcomer is refused "full"."""
    endpoint, relay_proc, log = relay
    context = zmq.Context()
    try:
        with RelayProber(endpoint) as prober:
            threads = threads_of(relay_proc.pid)
            started = time.monotonic()
            for i in range(100):
                assert prober.probe([_want(f"nobody-{i}")]) == REFUSED, prober.reply
                assert prober.reply["code"] == "not_found", prober.reply
            assert time.monotonic() - started < 10
            assert threads_of(relay_proc.pid) <= threads

            start_testsrc(procs, stream_name)
            wait_until(lambda: listed_alive(broker.address, stream_name), 10, what="the producer")
            assert prober.probe([_want(stream_name)]) == ANSWERED, prober.reply
            for v in (True, 1.0):  # equal to 1, and no version
                want = {**msgpack.unpackb(_want(stream_name)), "v": v}
                assert prober.probe([msgpack.packb(want)]) == REFUSED, (v, prober.reply)
                assert prober.reply["code"] == "bad_request"
            assert prober.probe([wire.BYE]) == ANSWERED  # so nobody wants it now

            # Fake streams of this host, each wanted by a subscriber of its own, which waits;
            # the feed of the real stream, wanted by nobody now, makes room for the last.
            threads = threads_of(relay_proc.pid)
            with BrokerClient(broker.address) as client:
                for i in range(MAX_FEEDS + 1):
                    register_fake(client, f"fake{i}", config.host_id())
            waiting = []
            for i in range(MAX_FEEDS):
                dealer = context.socket(zmq.DEALER)
                dealer.linger = 0
                dealer.connect(endpoint)
                dealer.send(_want(f"fake{i}"))
                waiting.append(dealer)
            wait_until(lambda: all(logged(log, f"wants fake{i} ") for i in range(MAX_FEEDS)),
                       10, what="the relay to read every fake stream")
            assert prober.probe([_want(f"fake{MAX_FEEDS}")]) == REFUSED, prober.reply
            assert prober.reply["code"] == "full", prober.reply
            assert not any(d.poll(0) for d in waiting), "a stream with no frames sent one"
            # A feed is a thread and a subscriber's ZeroMQ context (two more): no more.
            assert threads_of(relay_proc.pid) <= threads + 3 * MAX_FEEDS
            assert prober.alive()
    finally:
        context.destroy(linger=0)
    assert logged(log, f"'fake{MAX_FEEDS}' cannot be one more")


class FakeProducer:
    """A stream whose ring and descriptors this test makes by hand: a real RingWriter, a PUB
    socket of our own, and a registration with the broker, so any geometry can be claimed."""

    def __init__(self, name: str, shape: tuple[int, ...], fmt: str, broker: str) -> None:
        self.name = name
        self.ring = RingWriter.create(config.segment_name(name), Geometry.of(shape, "u1", fmt), 4)
        self.context = zmq.Context()
        self.socket = self.context.socket(zmq.PUB)
        self.socket.linger = 0
        self.endpoint = f"tcp://127.0.0.1:{free_port()}"
        self.socket.bind(self.endpoint)
        self.seq = 0
        with BrokerClient(broker) as client:
            g = self.ring.geometry
            client.request("register", name=name, host=config.host_id(), pid=os.getpid(),
                           segment=self.ring.name, endpoint=self.endpoint, token=self.ring.token,
                           secret=os.urandom(16), generation=0, shape=list(g.shape),
                           dtype=g.dtype.str, fmt=fmt, slots=4)

    def publish(self) -> None:
        seq, g = self.seq, self.ring.geometry
        self.ring.begin(seq)[...] = seq % 256
        slot = self.ring.commit(seq, seq, time.time_ns())
        _, _, stamp = self.ring.slot_info(slot)
        d = Descriptor(stream=self.name, generation=0, token=self.ring.token, seq=seq, slot=slot,
                       pts=seq, timestamp_ns=stamp, shape=g.shape, dtype=g.dtype.str, fmt=g.fmt)
        self.socket.send(topic(self.name) + d.pack())
        self.seq += 1

    def close(self) -> None:
        self.socket.close()
        self.context.term()
        self.ring.close(unlink=True)


def test_the_relay_refuses_a_jpeg_it_cannot_make_and_keeps_serving(procs, relay, broker,
                                                                    stream_name):
    """A ring may claim to be gray with two channels: OpenCV cannot make a JPEG of that,
    and the relay says so to whoever asked for one, and serves the others."""
    endpoint, relay_proc, log = relay
    fake = FakeProducer(stream_name, (8, 8, 2), "gray", broker.address)
    stop = threading.Event()
    thread = threading.Thread(target=lambda: [(fake.publish(), time.sleep(0.01))
                                              for _ in iter(stop.is_set, True)], daemon=True)
    thread.start()
    try:
        with RelayProber(endpoint) as prober:
            assert prober.probe([_want(stream_name, "raw")]) == ANSWERED, prober.reply
            assert prober.probe([_want(stream_name, "jpeg")]) == REFUSED, prober.reply
            assert prober.reply["code"] == "unsupported", prober.reply
            assert prober.probe([_want(stream_name, "raw")]) == ANSWERED, prober.reply
            assert prober.alive()
    finally:
        stop.set()
        thread.join(2)
        fake.close()
    assert relay_proc.poll() is None, "the relay died"
    assert logged(log, "JPEG encoding of a gray (8, 8, 2)")
