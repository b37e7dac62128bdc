"""Hostile input (framebus/testing/hostile.py), fuzzed against a real broker process: every
message is refused with a reason that is also logged, answered, or cut by ZeroMQ for its size,
never left unanswered; the broker neither stops, stalls nor grows without bound; a real stream
keeps flowing, intact, meanwhile."""

from __future__ import annotations

import time
from pathlib import Path

import msgpack
import pytest
from conftest import BrokerProcess, wait_until
from fuzzing import FUZZ, Watch, listed_alive, logged, register_fake, start_service, start_testsrc
from hypothesis import example, given

import framebus
from framebus import BrokerClient, config
from framebus.broker import MAX_RELAYS, MAX_STREAMS
from framebus.testing import hostile
from framebus.testing.probers import CUT, FINE, REFUSED, BrokerProber, oversized

BROKER_CODES = {"bad_request", "not_found", "unknown", "in_use", "full", "forbidden"}


def start_broker(procs, address: str, log: Path):
    proc = start_service(procs, log, "broker", "--bind", address)
    wait_until(lambda: framebus.discovery.broker_answers(address), 10, what="the broker")
    return proc


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


def test_the_broker_caps_what_strangers_register(procs, broker_address, stream_name):
    """Well-formed registrations of fake streams and relays fill the broker up to a cap and
    no further; a full broker refuses with a reason and keeps its real streams; the fakes,
    dead once they miss their heartbeats, make room for new ones."""
    # Caps small enough to fill well within DEAD_AFTER, however loaded the machine: fakes
    # that died while the rest registered would make room that the test says is not there.
    caps = {"streams": 200, "relays": 20}
    broker = BrokerProcess(procs, broker_address).start(
        "--trust-loopback", "--max-streams", str(caps["streams"]),
        "--max-relays", str(caps["relays"]))
    start_testsrc(procs, stream_name)
    wait_until(lambda: listed_alive(broker.address, stream_name), 10, what="the real producer")
    with BrokerClient(broker.address) as client:
        codes = []
        for i in range(caps["streams"] + 20):
            try:
                register_fake(client, f"fake{i}")
                codes.append("ok")
            except framebus.FramebusError as exc:
                codes.append(str(exc))
        for i in range(caps["relays"] + 10):
            try:
                client.request("relay", host=f"h{i}", endpoint="tcp://127.0.0.1:1", pid=1)
                codes.append("ok")
            except framebus.FramebusError as exc:
                codes.append(str(exc))
        assert codes.count("ok") == caps["streams"] - 1 + caps["relays"], codes[-40:]
        assert all("no room" in c for c in codes if c != "ok"), set(codes)
        streams = client.streams()
        assert len(streams) == caps["streams"] and len(client.relays()) == caps["relays"]
        assert any(s.name == stream_name and s.alive for s in streams)
        # Silent for DEAD_AFTER, the fakes are dead: a newcomer takes the place of one.
        time.sleep(config.DEAD_AFTER + 0.3)
        register_fake(client, "newcomer")
        client.request("relay", host="new-host", endpoint="tcp://127.0.0.1:1", pid=1)
        names = {s.name for s in client.streams()}
        assert {"newcomer", stream_name} <= names and len(names) == caps["streams"]
        assert listed_alive(broker.address, stream_name)


def test_a_registered_endpoint_zeromq_refuses_is_a_timeout_with_its_reason(trusting_broker,
                                                                           stream_name):
    """A registration may name any endpoint that starts right: a subscriber says it cannot
    connect, as a Timeout, never a ZeroMQ error."""
    broker = trusting_broker
    with BrokerClient(broker.address) as client:
        register_fake(client, stream_name, config.host_id(), "tcp://no-port")
    with framebus.Subscriber(stream_name, transport="shm") as sub, \
            pytest.raises(framebus.Timeout, match="cannot connect"):
        sub.recv(timeout=0.5)


def test_a_flood_of_refusals_is_a_line_of_each_code(procs, broker_address, tmp_path):
    """3,000 bad requests and 300 lookups of missing streams, well within the 10 s in which a
    code is logged once (framebus.broker.REFUSALS_LOGGED): one line of each code in the log
    of `framebus -v broker`, and every request answered."""
    log = tmp_path / "broker.log"
    start_broker(procs, broker_address, log)
    with BrokerProber(broker_address) as prober, BrokerClient(broker_address) as client:
        for _ in range(3000):
            assert prober.probe([b"", b"\xc1"]) == REFUSED, prober.reply
        for i in range(300):
            with pytest.raises(framebus.StreamNotFound):
                client.lookup(f"nobody-{i}")
        assert prober.alive()
    text = log.read_text(encoding="utf-8")  # the rest at debug level, if it is on
    assert text.count("WARNING framebus.broker: refused a request (bad_request)") == 1, text[-2000:]
    assert text.count("WARNING framebus.broker: refused a request (not_found)") == 1, text[-2000:]


def test_the_caps_are_the_operators_to_set(procs, broker_address, tmp_path):
    """`framebus broker --max-streams N --max-relays M`: the caps a site sizes for itself."""
    broker = start_service(procs, tmp_path / "broker.log", "broker", "--bind", broker_address,
                           "--max-streams", "300", "--max-relays", "3", "--trust-loopback")
    wait_until(lambda: framebus.discovery.broker_answers(broker_address), 10, what="the broker")
    with BrokerClient(broker_address) as client:
        for i in range(300):  # a cap of the site's own, not the default MAX_STREAMS
            register_fake(client, f"fake{i}")
        with pytest.raises(framebus.BrokerFull, match="300"):
            register_fake(client, "one-too-many")
        for i in range(3):
            client.request("relay", host=f"h{i}", endpoint="tcp://127.0.0.1:1", pid=1)
        with pytest.raises(framebus.BrokerFull, match="3"):
            client.request("relay", host="h3", endpoint="tcp://127.0.0.1:1", pid=1)
        assert len(client.streams()) == 300 != MAX_STREAMS and len(client.relays()) == 3
    assert broker.poll() is None
