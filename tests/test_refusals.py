"""Issue 14, section 4: a flood of bad requests is a few log lines that count the rest; a
refused subscriber backs off, and still takes a stream that comes up as soon as before; a list
of any size comes in pages; a Publisher on a full broker publishes, and registers once there
is room. The broker and relay run in threads here: their counts, logs and caps are at hand."""

from __future__ import annotations

import json
import logging
import os
import re
import threading
import time

import msgpack
import numpy as np
import pytest
import zmq
from conftest import free_port, wait_until
from fuzzing import fill, register_fake

import framebus
from framebus import BrokerClient, config
from framebus import broker as broker_module
from framebus.protocol.broker import LIST_PAGE, MAX_REPLY, MAX_STREAMS
from framebus.remote import relay as relay_module
from framebus.testing.probers import REFUSED, BrokerProber, RelayProber

MORE = re.compile(r"\(and (\d+) more since the last one logged\)")


class Service(threading.Thread):
    """A Broker or a Relay serving in a thread of this process, on a context of its own."""

    def __init__(self, make) -> None:
        super().__init__(daemon=True)
        self.context = zmq.Context()
        self.service = make(self.context)
        self.stop = threading.Event()

    def run(self) -> None:
        self.service.run(self.stop)

    def close(self) -> None:
        self.stop.set()
        self.join(5)
        self.service.close()
        self.context.destroy(linger=0)


@pytest.fixture
def services(monkeypatch):
    """Starts an in-process broker (producers live 60 s without heartbeats) or relay, each
    as ``services.broker()`` / ``services.relay()``; all closed at teardown."""
    started: list[Service] = []
    address = f"tcp://127.0.0.1:{free_port()}"
    monkeypatch.setenv("FRAMEBUS_BROKER", address)

    class Services:
        def start(self, make):
            service = Service(make)
            service.start()
            started.append(service)
            return service.service

        def broker(self) -> broker_module.Broker:
            # Its tests register simulated producers: no rings behind them, other hosts.
            return self.start(lambda c: broker_module.Broker(address, context=c, dead_after=60,
                                                             trust_loopback=True))

        def relay(self) -> relay_module.Relay:
            endpoint = f"tcp://127.0.0.1:{free_port()}"
            relay = self.start(lambda c: relay_module.Relay([endpoint], context=c))
            wait_until(lambda: relay._registration.done, 5, what="the relay's first list")
            return relay

    yield Services()
    for service in reversed(started):
        service.close()


def refusal_lines(caplog, code: str) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.levelno == logging.WARNING and f"refused a request ({code})" in r.getMessage()]


def told(lines: list[str]) -> int:
    """How many refusals the log lines account for: each, and the ones it says went unsaid."""
    return sum(1 + int(m.group(1)) if (m := MORE.search(line)) else 1 for line in lines)


# -- log floods --------------------------------------------------------------------------------

def flood(prober, message: list[bytes], n: int, bursts: int, pause: float) -> list[str]:
    codes = []
    for _ in range(bursts):
        for _ in range(n // bursts):
            assert prober.probe(message) == REFUSED, prober.reply
            codes.append(prober.reply["code"])
        time.sleep(pause)
    return codes


@pytest.mark.parametrize("service", ["broker", "relay"])
def test_a_flood_of_bad_requests_is_a_few_lines_that_count_the_rest(services, monkeypatch,
                                                                     caplog, service):
    """2,000 bad requests over about 2 s, logged at most once per 0.5 s per code: a handful of
    lines which, with the one after the flood, account for every refusal; the service
    answers each, and counts each in ``rejected``."""
    caplog.set_level(logging.INFO, logger="framebus")
    monkeypatch.setattr(broker_module, "REFUSALS_LOGGED", 0.5)
    monkeypatch.setattr(relay_module, "REFUSALS_LOGGED", 0.5)
    broker = services.broker()
    target = broker if service == "broker" else services.relay()
    address = broker.address if service == "broker" else target.endpoint
    garbage = [b"", b"\xc1"] if service == "broker" else [b"\xc1"]
    prober_class = BrokerProber if service == "broker" else RelayProber
    with prober_class(address) as prober:
        before = target.rejected
        started = time.monotonic()
        codes = flood(prober, garbage, 2000, bursts=4, pause=0.5)
        took = time.monotonic() - started
        assert set(codes) == {"bad_request"} and target.rejected - before == 2000
        lines = refusal_lines(caplog, "bad_request")
        assert 1 <= len(lines) <= took / 0.5 + 1, lines
        time.sleep(0.5)
        assert prober.probe(garbage) == REFUSED  # the flood's tail is told with the next line
        lines = refusal_lines(caplog, "bad_request")
        assert told(lines) == 2001 and target.rejected - before == 2001, lines
        assert any(MORE.search(line) for line in lines) and prober.alive(), lines


# -- retries -----------------------------------------------------------------------------------

def requests_seen(counter, sub: framebus.Subscriber, start: float, end: float) -> int:
    """What *counter* gained between *start* and *end* s while *sub* waited for frames."""
    began, counts = time.monotonic(), []
    for t in (start, end):
        while (left := began + t - time.monotonic()) > 0:
            with pytest.raises(framebus.Timeout):
                sub.recv(timeout=min(0.3, left))
        counts.append(counter())
    return counts[1] - counts[0]


def test_a_subscriber_the_broker_refuses_asks_twice_a_second_not_four_times(services):
    """Lookups of a stream nobody registered, from 1 s to 4 s: 12 before, 6 now."""
    broker = services.broker()
    with framebus.Subscriber("nobody") as sub:
        seen = requests_seen(lambda: broker.requests, sub, 1.0, 4.0)
    assert 3 <= seen <= 8, seen


@pytest.mark.parametrize("refusal", ["not_found", "full"])
def test_a_subscriber_the_relay_refuses_backs_off(services, monkeypatch, refusal):
    """Wants the relay refuses, from 1 s to 4 s: 60 (not_found) and 20,000 (full) before."""
    services.broker()
    relay = services.relay()
    with BrokerClient() as client:
        if refusal == "not_found":  # the broker sends it to our relay, which serves another host
            client.request("relay", host="elsewhere", endpoint=relay.endpoint, pid=1)
            register_fake(client, "refused", "elsewhere")
        else:  # the relay reads no stream more
            monkeypatch.setattr(relay._feeds, "most", 0)
            register_fake(client, "refused", config.host_id())
    with framebus.Subscriber("refused", transport="tcp") as sub:
        seen = requests_seen(lambda: relay.rejected, sub, 1.0, 4.0)
    assert 1 <= seen <= 6, seen


class Producer(threading.Thread):
    """A Publisher of a test pattern at 100 fps, in a thread, once ``start()`` is called."""

    def __init__(self, name: str) -> None:
        super().__init__(daemon=True)
        self.pub = framebus.Publisher(name, shape=(24, 32, 3))
        self.stopping = threading.Event()

    def run(self) -> None:
        image = np.zeros((24, 32, 3), np.uint8)
        while not self.stopping.wait(0.01):
            image[...] = self.pub.seq % 256
            self.pub.publish(image)

    def close(self) -> None:
        self.stopping.set()
        self.join(2)
        self.pub.close()


@pytest.mark.parametrize("transport", ["shm", "tcp"])
def test_a_stream_that_comes_up_is_taken_as_soon_as_before(services, transport):
    """A subscriber that has waited 3 s takes a local stream within 0.6 s of its producer
    (0.26 s before the backoff; about 0.1 s now, since a new ring ends the pause)."""
    services.broker()
    if transport == "tcp":
        services.relay()
    got: list[float] = []
    with framebus.Subscriber("late", transport=transport) as sub:
        with pytest.raises(framebus.Timeout):
            sub.recv(timeout=3.0)
        producer = Producer("late")
        up = time.monotonic()
        producer.start()
        try:
            sub.recv(timeout=5.0)
            got.append(time.monotonic() - up)
        finally:
            producer.close()
    assert got[0] < 0.6, got


def test_a_subscriber_refused_for_seconds_gets_every_frame_once_served(services, monkeypatch):
    """Refused "full" for 3 s, the subscriber is served within the pause's cap once the relay
    has room, and then at the stream's rate: the pause starts over with the first frame."""
    services.broker()
    relay = services.relay()
    monkeypatch.setattr(relay._feeds, "most", 0)
    producer = Producer("room")
    producer.start()
    try:
        with framebus.Subscriber("room", transport="tcp") as sub:
            with pytest.raises(framebus.Timeout):
                sub.recv(timeout=3.0)
            monkeypatch.setattr(relay._feeds, "most", 64)
            sub.recv(timeout=2.5)
            started = time.monotonic()
            frames = [sub.recv(timeout=1.0) for _ in range(30)]
            assert time.monotonic() - started < 1.5 and frames[-1].seq > frames[0].seq
    finally:
        producer.close()


# -- a full broker -----------------------------------------------------------------------------

def test_a_publisher_on_a_full_broker_publishes_and_registers_once_there_is_room(services,
                                                                                  caplog):
    """The broker holds MAX_STREAMS live streams: a Publisher is made all the same, says so
    once (naming the cap), publishes, and is found once a stream makes room."""
    caplog.set_level(logging.INFO, logger="framebus")
    broker = services.broker()
    fakes = fill(broker.address, MAX_STREAMS, "elsewhere")
    producer = Producer("latecomer")
    producer.start()
    try:
        time.sleep(1.5)  # three beats, each a registration refused
        said = [r.getMessage() for r in caplog.records if "is full" in r.getMessage()]
        assert len(said) == 1 and f"at most {MAX_STREAMS} streams" in said[0], said
        assert producer.pub.seq > 50  # publishing all along
        with BrokerClient() as client, pytest.raises(framebus.StreamNotFound):
            client.lookup("latecomer")
        name, token, secret = fakes[0]
        with BrokerClient() as client:
            client.request("unregister", name=name, token=token, secret=secret)
        wait_until(lambda: framebus.discovery.broker_answers() and any(
            s.name == "latecomer" for s in framebus.streams()), 2, what="the registration")
        with framebus.Subscriber("latecomer") as sub:
            frame = sub.recv(timeout=2.0)
            assert frame.copy().flat[0] == frame.seq % 256
        assert any("has room again" in r.getMessage() for r in caplog.records)
    finally:
        producer.close()


def test_a_relay_on_a_full_broker_says_so_once_and_keeps_its_list(services, monkeypatch,
                                                                 caplog):
    caplog.set_level(logging.INFO, logger="framebus")
    broker = services.broker()
    monkeypatch.setattr(broker, "max_relays", 2)  # this broker's cap, as --max-relays 2
    with BrokerClient() as client:
        for host in ("h1", "h2"):
            client.request("relay", host=host, endpoint="tcp://127.0.0.1:1", pid=1)
    fill(broker.address, 1, config.host_id())
    relay = services.relay()
    time.sleep(1.6)  # three beats or more
    said = [r.getMessage() for r in caplog.records
            if r.name == relay_module.log.name and "no room for the relay" in r.getMessage()]
    assert len(said) == 1 and "at most 2 relays" in said[0], said
    assert relay._registration.known == {"fake0"}


# -- listings ----------------------------------------------------------------------------------

W = "\U00020000"  # a letter of 4 bytes in UTF-8: the heaviest character a field may hold


def register_largest(client: BrokerClient, i: int, host: str) -> None:
    """A stream as heavy as the fields allow: a host, an endpoint and 16 figure names of
    4-byte characters, the longest segment; then a heartbeat that carries the figures."""
    name, token, secret = f"{i:04d}" + "n" * 60, os.urandom(16), os.urandom(16)
    client.request("register", name=name, host=host, pid=2**31 - 1, segment="/" + "s" * 136
                   + "." + name, endpoint="ipc://" + W * 249, token=token, secret=secret,
                   generation=2**63 - 1, shape=[2**31 - 1] * 4, dtype="~" * 15, fmt="~" * 15,
                   slots=1024)
    client.request("heartbeat", name=name, token=token, secret=secret, frames=-(2**63),
                   fps=1e300, age=1e300, subscribers=-(2**63),
                   figures={W * 31 + chr(0x4E00 + f): 1e300 for f in range(16)})


def unpaged_list(address: str) -> bytes:
    """The reply to a `list` with no fields, as a client older than pages sends it."""
    context = zmq.Context()
    try:
        dealer = context.socket(zmq.DEALER)
        dealer.linger = 0
        dealer.connect(address)
        dealer.send_multipart([b"", msgpack.packb({"op": "list", "id": 1})])
        assert dealer.poll(5000), "no reply"
        return dealer.recv_multipart()[1]
    finally:
        context.destroy(linger=0)


def test_a_broker_full_of_the_heaviest_entries_lists_every_one(services, procs):
    """MAX_STREAMS streams and MAX_RELAYS relays as heavy as the fields allow: the whole list
    weighs more than a client takes in one reply, and comes whole in pages, to a client and
    to `framebus ls`."""
    broker = services.broker()
    hosts = [W * 250 + f"{i:05d}" for i in range(broker_module.MAX_RELAYS)]
    with BrokerClient() as client:
        for i in range(MAX_STREAMS):
            register_largest(client, i, hosts[i % len(hosts)])
        for host in hosts:
            client.request("relay", host=host, endpoint="tcp://" + W * 249, pid=2**31 - 1)
        whole = unpaged_list(broker.address)  # as an older client asks: all at once
        assert len(whole) > MAX_REPLY and "next" not in msgpack.unpackb(whole), len(whole)
        with pytest.raises(framebus.ProtocolError, match="exceeds"):  # not "did not answer"
            client.request("list")
        before = broker.requests
        streams, relays = client.listing()
        pages = broker.requests - before
    assert len(streams) == MAX_STREAMS and len(relays) == len(hosts)
    assert all(s.relay for s in streams)
    assert pages == -(-(MAX_STREAMS + len(hosts)) // LIST_PAGE)  # each page as full as it goes
    ls = procs.framebus("ls", "--json")
    out, err = ls.communicate(timeout=30)
    assert ls.returncode == 0, err
    assert sorted(row["name"] for row in json.loads(out)) == sorted(s.name for s in streams)


def test_thousands_of_streams_list_in_pages(services):
    """2,000 streams (the default cap is 4,096): each page a request of its own, none missed."""
    broker = services.broker()
    fill(broker.address, 2000, "h")
    with BrokerClient() as client:
        assert len(client.streams(host="h")) == 2000 and client.streams(host="other") == []
        names = [s.name for s in client.streams()]
    assert sorted(names) == names and len(set(names)) == 2000


class OldBroker(threading.Thread):
    """A broker from before pages: a `list` with any field but op and id is bad_request."""

    def __init__(self, address: str, streams: list[dict]) -> None:
        super().__init__(daemon=True)
        self.context = zmq.Context()
        self.socket = self.context.socket(zmq.ROUTER)
        self.socket.linger = 0
        self.socket.bind(address)
        self.streams, self.refused = streams, 0

    def run(self) -> None:
        while self.socket.poll(1000):
            identity, _, payload = self.socket.recv_multipart()
            request = msgpack.unpackb(payload)
            if set(request) - {"op", "id"}:
                self.refused += 1
                reply = {"ok": False, "code": "bad_request",
                         "error": "malformed request: Object contains unknown field `limit`"}
            else:
                reply = {"ok": True, "streams": self.streams, "relays": []}
            self.socket.send_multipart([identity, b"", msgpack.packb({**reply,
                                                                      "id": request["id"]})])
        self.context.destroy(linger=0)


def test_a_client_reads_a_broker_older_than_pages(broker_address):
    """Refused its first page, the client asks for the whole list, and filters by host."""
    def stream(name: str, host: str) -> dict:
        return dict(name=name, host=host, pid=1, segment=f"/framebus.{name}",
                    endpoint="ipc:///x", token=b"t" * 16, generation=0, shape=[4, 4, 3],
                    dtype="|u1", fmt="bgr24", slots=8, alive=True)

    old = OldBroker(broker_address, [stream("a1", "a"), stream("b1", "b")])
    old.start()
    with BrokerClient(broker_address) as client:
        assert [s.name for s in client.streams()] == ["a1", "b1"]
        assert [s.name for s in client.streams(host="b")] == ["b1"]
    assert old.refused == 1  # asked once whether it pages, and remembered
    old.join(5)
