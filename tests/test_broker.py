"""The broker under malformed and hostile requests: it answers with a reason and keeps serving."""

import random
import threading

import msgpack
import pytest
import zmq

import framebus
from framebus import BrokerClient

GOOD_REGISTRATION = dict(name="cam1", host="h", pid=1, segment="/framebus.cam1",
                         endpoint="ipc:///tmp/x.sock", token=b"t" * 16, secret=b"s" * 16,
                         generation=0, shape=[4, 4, 3], dtype="|u1", fmt="bgr24", slots=8)


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
    with BrokerClient(broker_address, timeout=0.3) as client, \
            pytest.raises(framebus.BrokerUnavailable, match=broker_address):
        client.streams()


@pytest.mark.parametrize(("change", "field"), [
    ({"pid": True}, "Expected `int`, got `bool` - at `$.pid`"),
    ({"slots": 8.0}, "got `float` - at `$.slots`"),
    ({"extra": 1}, "unknown field `extra`"),
    ({"host": "h\x1b[31m"}, "`$.host`"),
    ({"host": "h\u200b"}, "field `host`"),  # printable as str.isprintable() says
    ({"host": "h" * 256}, "`$.host`"),
    ({"shape": [4, 4, 3, 1, 1]}, "`$.shape`"),
    ({"segment": "/framebus.cam2"}, "field `segment` to end in '.cam1'"),
])
def test_a_refusal_says_which_field(broker, raw, change, field):
    reply = ask(raw, b"", msgpack.packb({"op": "register", "id": 9, **GOOD_REGISTRATION,
                                         **change}))
    assert reply["ok"] is False and reply["code"] == "bad_request" and reply["id"] == 9
    assert field in reply["error"], reply["error"]


def test_a_request_over_its_cap_is_refused_before_decoding(broker, raw):
    reply = ask(raw, b"", msgpack.packb({"op": "ping", "id": 3, "pad": "p" * 5000}))
    assert reply["code"] == "bad_request" and "exceeds" in reply["error"] and reply["id"] == 3


class LyingBroker:
    """A ROUTER that answers every request, echoing its id, with whatever it is told."""

    def __init__(self, address: str) -> None:
        self.context = zmq.Context()
        self.socket = self.context.socket(zmq.ROUTER)
        self.socket.linger = 0
        self.socket.bind(address)

    def answer(self, reply: dict) -> None:
        identity, _, payload = self.socket.recv_multipart()
        request = msgpack.unpackb(payload)
        self.socket.send_multipart([identity, b"", msgpack.packb({**reply,
                                                                  "id": request["id"]})])

    def close(self) -> None:
        self.socket.close()
        self.context.term()


def _stream(**changes) -> dict:
    """A StreamInfo as a broker sends it: a registration without its secret, and figures."""
    registration = {k: v for k, v in GOOD_REGISTRATION.items() if k != "secret"}
    return {**registration, "alive": True, "frames": 1, "fps": 30.0, "age": 0.1,
            "subscribers": 0, "figures": {}, "relay": None, **changes}


@pytest.mark.parametrize(("reply", "field"), [
    ({"ok": True, "stream": _stream(shape="big")}, "`$.stream.shape`"),
    ({"ok": True, "stream": _stream(pid=True)}, "`$.stream.pid`"),
    ({"ok": True, "stream": _stream(evil=1)}, "unknown field `evil`"),
    ({"ok": True, "stream": _stream(host="\x1b]0;pwned\x07")}, "`$.stream.host`"),
    ({"ok": True, "stream": _stream(segment="/etc.passwd")},
     "`segment` to end in '.cam1' - at `$.stream`"),
    ({"ok": True, "stream": _stream(relay="http://evil")}, "`$.stream.relay`"),
    ({"ok": True, "stream": _stream(figures={"x": "y"})}, "`$.stream.figures"),
    ({"ok": True}, "missing required field `stream`"),
    ({"ok": 1, "stream": _stream()}, "`$.ok`"),
    ({"ok": True, "stream": _stream(host="cam\u202e")}, "field `host` - at `$.stream`"),
    ({"ok": False, "code": "not_found", "error": "\x1b[2J"}, "field `error`"),
    ({"ok": False, "code": "not_found"}, "missing required field `error`"),
])
def test_a_client_believes_no_lying_broker(broker_address, reply, field):
    liar = LyingBroker(broker_address)
    thread = threading.Thread(target=liar.answer, args=(reply,))
    thread.start()
    try:
        with BrokerClient(broker_address, timeout=2) as client, \
                pytest.raises(framebus.ProtocolError) as caught:
            client.lookup("cam1")
        assert field in str(caught.value), caught.value
    finally:
        thread.join(3)
        liar.close()


def test_a_client_takes_a_broker_reply_of_the_old_wire(broker_address):
    """What the broker sent before its replies were declared: still a StreamInfo."""
    liar = LyingBroker(broker_address)
    thread = threading.Thread(target=liar.answer, args=({"ok": True, "stream": _stream()},))
    thread.start()
    try:
        with BrokerClient(broker_address, timeout=2) as client:
            info = client.lookup("cam1")
        assert (info.name, info.shape, info.token, info.fps) == ("cam1", (4, 4, 3), b"t" * 16,
                                                                 30.0)
    finally:
        thread.join(3)
        liar.close()
