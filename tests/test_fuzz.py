"""Hostile input (framebus/testing/hostile.py), fuzzed against real service processes: every
message to the broker or the relay is refused with a reason that is also logged, answered, or cut
by ZeroMQ for its size, never left unanswered; neither service stops, stalls or grows
without bound; a real stream keeps flowing, intact, meanwhile. And descriptors that lie,
on a real producer's own socket, never make a Subscriber return a wrong frame."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import msgpack
import pytest
import zmq
from conftest import free_port, wait_until
from hypothesis import HealthCheck, example, given, settings

import framebus
from framebus import BrokerClient, config
from framebus.broker import MAX_RELAYS, MAX_STREAMS
from framebus.names import topic
from framebus.protocol import relay as wire
from framebus.protocol.descriptor import Descriptor
from framebus.remote.relay import MAX_FEEDS
from framebus.shm import Geometry, RingWriter
from framebus.testing import hostile
from framebus.testing.probers import (
    ANSWERED,
    CUT,
    FINE,
    REFUSED,
    BrokerProber,
    RelayProber,
    oversized,
)
from framebus.testsrc import TestPattern

#: A few hundred messages per service: each is one round trip, and the generation is the
#: slower part. No database: a CI run must not depend on what an earlier one found.
FUZZ = settings(max_examples=250, deadline=None, database=None,
                suppress_health_check=list(HealthCheck))
BROKER_CODES = {"bad_request", "not_found", "unknown", "in_use", "full"}
RELAY_CODES = {"bad_request", "not_found", "full", "unsupported"}
SEED = 20251120


# -- real processes, logging to files -----------------------------------------------------------

def start_service(procs, log: Path, *args: str):
    """`framebus -v ARGS`, its log to *log* (a pipe nobody reads would fill and stall it)."""
    env = {**os.environ, "PYTHONIOENCODING": "utf-8"}
    with open(log, "w") as f:
        return procs.framebus("-v", *args, stderr=f, env=env)


def start_broker(procs, address: str, log: Path):
    proc = start_service(procs, log, "broker", "--bind", address)
    wait_until(lambda: framebus.discovery.broker_answers(address), 10, what="the broker")
    return proc


def start_relay(procs, endpoint: str, log: Path):
    proc = start_service(procs, log, "relay", "--bind", endpoint)

    def registered():
        with BrokerClient() as client:
            return any(r["endpoint"] == endpoint and r["alive"] for r in client.relays())

    wait_until(registered, 10, what="the relay to register")
    return proc


def start_testsrc(procs, name: str):
    return procs.framebus("testsrc", name, "--size", "32x24", "--fps", "100")


def logged(log: Path, reason: str) -> bool:
    return reason in log.read_text(encoding="utf-8", errors="replace")


def threads_of(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("Threads:")))


class Watch(threading.Thread):
    """Reads a real stream while the fuzzing runs, and checks it: every frame by content,
    the longest wait between two frames, and the stream listed alive at the broker."""

    def __init__(self, name: str, transport: str) -> None:
        super().__init__(daemon=True)
        self.name, self.transport = name, transport
        self.good = self.bad = self.unlisted = 0
        self.longest_gap = 0.0
        self.error: BaseException | None = None
        self._stopping = threading.Event()

    def run(self) -> None:
        try:
            with framebus.Subscriber(self.name, transport=self.transport) as sub, \
                    BrokerClient(timeout=1.0) as broker:
                last, next_check = None, 0.0
                while not self._stopping.is_set():
                    took = self._take(sub)
                    now = time.monotonic()
                    if last is not None:
                        self.longest_gap = max(self.longest_gap, now - last)
                    last = now if took else last
                    if last is not None and now >= next_check:
                        self.unlisted += not broker.lookup(self.name).alive
                        next_check = now + 0.25
        except Exception as exc:  # reported by check()
            self.error = exc

    def _take(self, sub) -> bool:
        """Receive a frame and check it; whether one came."""
        try:
            frame = sub.recv(timeout=0.2)
            pixels = frame.copy()
        except framebus.Timeout:
            return False
        except framebus.FrameOverwritten:
            return True  # lapped while copied: it came, and was never taken for good
        ok = TestPattern(pixels.shape).matches(pixels, frame.seq)
        self.good += ok
        self.bad += not ok
        return True

    def __enter__(self) -> Watch:
        self.start()
        wait_until(lambda: self.good >= 3 or self.error, 15, what=f"frames of {self.name}")
        assert self.error is None, self.error
        return self

    def __exit__(self, *exc) -> None:
        self._stopping.set()
        self.join(5)

    def check(self) -> None:
        assert self.error is None, f"the subscriber failed: {self.error!r}"
        assert self.bad == 0, f"{self.bad} frames of {self.good + self.bad} were wrong"
        assert self.longest_gap < 1.5, f"frames stopped for {self.longest_gap:.1f} s"
        assert self.unlisted == 0, "the producer was not listed alive throughout"


# -- the broker ---------------------------------------------------------------------------------

def test_the_broker_refuses_garbage_with_a_logged_reason_and_keeps_serving(
        procs, broker_address, tmp_path, stream_name):
    """Every message gets a reply with a reason (also in the broker's log), or is cut for
    its size; the broker answers a ping after each, and after its fakes die; a real stream
    registered before stays listed alive and its frames keep coming, intact."""
    log = tmp_path / "broker.log"
    broker = start_broker(procs, broker_address, log)
    start_testsrc(procs, stream_name)  # a real producer, registered before the fuzzing
    refusals: list[str] = []
    with Watch(stream_name, "shm") as watch, BrokerProber(broker_address) as prober:

        @FUZZ
        @given(hostile.broker_messages())
        # Found before: an op no dict can hold; a pid the kernel cannot be asked about, which
        # the broker did ask about once the fake producer was marked dead.
        @example([b"", msgpack.packb({"op": ["register"], "id": 1})])
        @example([b"", msgpack.packb({"op": "register", "id": 2, "name": "fz-pid", "pid": 2**31,
                                      "host": config.host_id(), "segment": "/fz.fz-pid",
                                      "endpoint": "ipc:///fz", "token": b"t" * 16,
                                      "generation": 0, "shape": [2], "dtype": "|u1",
                                      "fmt": "raw", "slots": 2})])
        def fuzz(message: list[bytes]) -> None:
            outcome = prober.probe(message)
            assert outcome in FINE, (outcome, [part[:64] for part in message])
            # ZeroMQ cuts a connection for an oversized part, and for nothing else.
            assert (outcome == CUT) == oversized(message, prober.limit), outcome
            if outcome == REFUSED:
                assert prober.reply["code"] in BROKER_CODES, prober.reply
                refusals.append(prober.reply["error"])
            assert prober.alive(), "the broker stopped answering"

        fuzz()
        # The fakes registered are dead once silent for DEAD_AFTER: that must cost nothing.
        time.sleep(config.DEAD_AFTER + 0.3)
        assert prober.alive(), "the broker stopped answering once its fakes died"
        watch.check()
    assert broker.poll() is None, "the broker died"
    assert refusals, "nothing was refused: the fuzzer sent nothing malformed?"
    unlogged = [reason for reason in refusals if not logged(log, reason)]
    assert not unlogged, f"{len(unlogged)} refusals without their reason in the log: {unlogged[:3]}"
    with BrokerClient(broker_address) as client:
        assert len(client.streams()) <= MAX_STREAMS and len(client.relays()) <= MAX_RELAYS


def test_the_broker_caps_what_strangers_register(procs, broker, stream_name):
    """Well-formed registrations of fake streams and relays fill the broker up to a cap and
    no further; a full broker refuses with a reason and keeps its real streams; the fakes,
    dead once they miss their heartbeats, make room for new ones."""
    start_testsrc(procs, stream_name)
    wait_until(lambda: _alive(broker.address, stream_name), 10, what="the real producer")
    with BrokerClient(broker.address) as client:
        codes = []
        for i in range(MAX_STREAMS + 20):
            try:
                _register_fake(client, f"fake{i}")
                codes.append("ok")
            except framebus.FramebusError as exc:
                codes.append(str(exc))
        for i in range(MAX_RELAYS + 10):
            try:
                client.request("relay", host=f"h{i}", endpoint="tcp://127.0.0.1:1", pid=1)
                codes.append("ok")
            except framebus.FramebusError as exc:
                codes.append(str(exc))
        assert codes.count("ok") == MAX_STREAMS - 1 + MAX_RELAYS, codes[-40:]
        assert all("no room" in c for c in codes if c != "ok"), set(codes)
        streams = client.streams()
        assert len(streams) == MAX_STREAMS and len(client.relays()) == MAX_RELAYS
        assert any(s.name == stream_name and s.alive for s in streams)
        # Silent for DEAD_AFTER, the fakes are dead: a newcomer takes the place of one.
        time.sleep(config.DEAD_AFTER + 0.3)
        _register_fake(client, "newcomer")
        client.request("relay", host="new-host", endpoint="tcp://127.0.0.1:1", pid=1)
        names = {s.name for s in client.streams()}
        assert {"newcomer", stream_name} <= names and len(names) == MAX_STREAMS
        assert _alive(broker.address, stream_name)


def _register_fake(client: BrokerClient, name: str, host: str = "elsewhere",
                   endpoint: str | None = None) -> None:
    """Register a stream with no producer behind it: as anyone who can reach the broker may."""
    client.request("register", name=name, host=host, pid=1,
                   segment=f"/{config.shm_prefix()}.{name}",
                   endpoint=endpoint or f"ipc:///nonexistent/{name}", token=os.urandom(16),
                   generation=0, shape=[4, 4, 3], dtype="|u1", fmt="bgr24", slots=8)


def _alive(address: str, name: str) -> bool:
    try:
        with BrokerClient(address) as client:
            return client.lookup(name).alive
    except framebus.StreamNotFound:
        return False


def test_a_registered_endpoint_zeromq_refuses_is_a_timeout_with_its_reason(broker, stream_name):
    """A registration may name any endpoint that starts right: a subscriber says it cannot
    connect, as a Timeout, never a ZeroMQ error."""
    with BrokerClient(broker.address) as client:
        _register_fake(client, stream_name, config.host_id(), "tcp://no-port")
    with framebus.Subscriber(stream_name, transport="shm") as sub, \
            pytest.raises(framebus.Timeout, match="cannot connect"):
        sub.recv(timeout=0.5)


# -- the relay ----------------------------------------------------------------------------------

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
            wait_until(lambda: _alive(broker.address, stream_name), 10, what="the producer")
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
                    _register_fake(client, f"fake{i}", config.host_id())
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
                           generation=0, shape=list(g.shape), dtype=g.dtype.str, fmt=fmt, slots=4)

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


# -- lying descriptors ---------------------------------------------------------------------------

FRAMES = 150
LIES = 3  # per frame
T0 = 1_700_000_000_000_000_000


class LyingSocket:
    """Stands in for a Publisher's PUB socket: before each true descriptor, it sends lies
    about that very frame, which the ring holds already (a frame is committed before its
    descriptor goes out), so that only the field a lie changes can give it away; and a
    replay of one of the last true descriptors, whose frame the ring may still hold."""

    def __init__(self, socket: zmq.Socket, facts: hostile.RingFacts) -> None:
        self.socket, self.facts = socket, facts
        self.lying = False
        self.lies: list[bytes] = []
        self._sent: list[bytes] = []

    def send(self, message: bytes) -> None:
        if self.lying:
            d = Descriptor.unpack(message[len(topic(self.facts.stream)):])
            lies = hostile.draw(hostile.lying_descriptors(self.facts.at(d.seq, d.pts,
                                                                        d.timestamp_ns)),
                                LIES, SEED + d.seq)
            lies.append(self._sent[-1 - d.seq % min(3, len(self._sent))])
            for lie in lies:
                self.socket.send(lie)
            self.lies += lies
        self._sent = [*self._sent[-2:], message]
        self.socket.send(message)

    def __getattr__(self, name: str):
        return getattr(self.socket, name)


@pytest.mark.parametrize("mode", ["all", "latest"])
def test_lying_descriptors_never_make_a_subscriber_return_a_wrong_frame(broker, stream_name,
                                                                         mode):
    """A real Publisher publishes the test pattern, with pts = seq and a timestamp known from
    the seq; lies about each frame go out on its own socket just before the truth. Every
    frame the subscriber returns is the truth, in order; each lie it reads is counted, and
    none raises."""
    shape = (24, 32, 3)
    pattern = TestPattern(shape)
    with framebus.Publisher(stream_name, shape=shape, fmt="bgr24", slots=8) as pub, \
            framebus.Subscriber(stream_name, mode=mode) as sub:
        liar = pub._socket = LyingSocket(pub._socket, hostile.RingFacts.of(pub))

        def publish() -> None:
            pub.publish(pattern.frame(pub.seq), pts=pub.seq, timestamp_ns=T0 + pub.seq)

        # Until the subscriber is connected, a PUB socket sends it nothing.
        frames = [wait_until(lambda: publish() or _recv(sub, 0.05), 10, what="a first frame")]
        liar.lying = True

        def produce() -> None:
            for _ in range(FRAMES):
                publish()
                time.sleep(0.002)

        producer = threading.Thread(target=produce)
        producer.start()
        while (frame := _recv(sub, 0.3)) is not None or producer.is_alive():
            if frame is None:
                continue
            frames.append(frame)
            try:
                pixels = frame.copy()
            except framebus.FrameOverwritten:
                pixels = None  # lapped while we looked: never taken for good
            assert pixels is None or pattern.matches(pixels, frame.seq), frame
            assert (frame.stream, frame.fmt, frame.shape, frame.generation, frame.token) == \
                   (stream_name, "bgr24", shape, 0, pub._ring.token), frame
            assert (frame.pts, frame.timestamp_ns) == (frame.seq, T0 + frame.seq), frame
        producer.join()
    seqs = [f.seq for f in frames]
    assert seqs == sorted(set(seqs)), "a frame came twice, or out of order"
    delivered = sum(lie.startswith(topic(stream_name)) for lie in liar.lies)
    assert sub.dropped <= FRAMES + delivered, sub.dropped  # no lie inflates the accounting
    if mode == "all":  # every descriptor is read: every frame returned, each lie counted
        assert len(frames) >= FRAMES, len(frames)
        assert sub.rejected + sub.dropped >= delivered, (sub.rejected, sub.dropped, delivered)
    else:
        assert len(frames) >= 10, len(frames)


def test_draw_gives_the_same_examples_for_the_same_seed():
    strategy = hostile.broker_messages()
    assert hostile.draw(strategy, 50, SEED) == hostile.draw(strategy, 50, SEED)
    assert hostile.draw(strategy, 50, SEED) != hostile.draw(strategy, 50, SEED + 1)
    assert len(hostile.draw(hostile.relay_messages(), 50, SEED)) == 50


def _recv(sub, timeout: float):
    try:
        return sub.recv(timeout=timeout)
    except framebus.Timeout:
        return None
