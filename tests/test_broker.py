"""The broker under malformed and hostile requests: it answers with a reason and keeps serving."""

import random

import msgpack
import pytest
import zmq

import framebus
from framebus import BrokerClient

GOOD_REGISTRATION = dict(name="cam1", host="h", pid=1, segment="/framebus.cam1",
                         endpoint="ipc:///tmp/x.sock", token=b"t" * 16, generation=0,
                         shape=[4, 4, 3], dtype="|u1", fmt="bgr24", slots=8)


@pytest.fixture
def raw(broker):
    """A bare DEALER socket on the broker, for sending whatever we like."""
    ctx = zmq.Context()
    s = ctx.socket(zmq.DEALER)
    s.linger = 0
    s.connect(broker.address)
    yield s
    s.close()
    ctx.term()


def ask(sock, *frames, timeout=2000):
    sock.send_multipart(list(frames))
    assert sock.poll(timeout), "broker did not answer"
    empty, reply = sock.recv_multipart()
    return msgpack.unpackb(reply)


def still_serving(address):
    with BrokerClient(address, timeout=2) as client:
        return client.request("ping")["ok"]


@pytest.mark.parametrize("payload", [
    b"", b"\xc1", b"not msgpack", msgpack.packb([1, 2]), msgpack.packb("list"),
    msgpack.packb({"op": "explode"}), msgpack.packb({"op": 3}), msgpack.packb({"op": "lookup"}),
    msgpack.packb({"op": "lookup", "name": "../../etc/passwd"}),
    msgpack.packb({"op": "lookup", "name": ["cam1"]}),
    msgpack.packb({"op": "heartbeat", "name": "cam1", "token": 5}),
    msgpack.packb({"op": "register", "name": "cam1"}),
    msgpack.packb({"op": "register", **GOOD_REGISTRATION, "shape": "big"}),
    msgpack.packb({"op": "register", **GOOD_REGISTRATION, "token": b"short"}),
    msgpack.packb({"op": "register", **GOOD_REGISTRATION, "endpoint": "http://evil"}),
    msgpack.packb({"op": "register", **GOOD_REGISTRATION, "segment": "/etc.passwd"}),
    msgpack.packb({"op": "register", **GOOD_REGISTRATION, "pid": -5}),
    msgpack.packb({"op": "register", **GOOD_REGISTRATION, "slots": 10**9}),
    msgpack.packb({"op": "register", **GOOD_REGISTRATION, "dtype": "x" * 300}),
])
def test_malformed_requests_get_an_error_reply(broker, raw, payload):
    reply = ask(raw, b"", payload)
    assert reply["ok"] is False and reply["code"] == "bad_request" and reply["error"]
    assert still_serving(broker.address)


def test_a_request_id_that_is_not_an_int_is_not_echoed(broker, raw):
    reply = ask(raw, b"", msgpack.packb({"op": "ping", "id": "x" * 1000}))
    assert reply["ok"] is True and reply["id"] is None


def test_bad_envelopes_and_oversized_messages_do_not_stop_it(broker, raw):
    raw.send_multipart([b"just one frame"])  # no empty delimiter: dropped, not answered
    raw.send_multipart([b"", b"a", b"b"])
    reply = ask(raw, b"x", b"y")
    assert reply["code"] == "bad_request"
    raw.send_multipart([b"", b"\x00" * (1 << 20)])  # over the 64 KiB cap: connection dropped
    assert still_serving(broker.address)


def test_random_garbage_never_kills_it(broker, raw):
    rng = random.Random(1)
    for _ in range(500):
        frames = [bytes(rng.randrange(256) for _ in range(rng.randint(0, 64)))
                  for _ in range(rng.randint(1, 4))]
        raw.send_multipart(frames)
    good = msgpack.packb({"op": "register", **GOOD_REGISTRATION})
    for _ in range(200):
        data = bytearray(good)
        data[rng.randrange(len(data))] = rng.randrange(256)
        raw.send_multipart([b"", bytes(data)])
    assert still_serving(broker.address)
    with BrokerClient(broker.address) as client:
        assert isinstance(client.streams(), list)


def test_errors_reach_the_client_as_exceptions(broker):
    with BrokerClient(broker.address) as client:
        with pytest.raises(framebus.StreamNotFound, match="no stream named 'nope'"):
            client.lookup("nope")
        with pytest.raises(framebus.InvalidName):
            client.lookup("no/pe")
        with pytest.raises(framebus.ProtocolError):
            client.request("register", name="x")


def test_an_unreachable_broker_is_a_clear_error(broker_address):
    with BrokerClient(broker_address, timeout=0.3) as client:
        with pytest.raises(framebus.BrokerUnavailable, match=broker_address):
            client.streams()
