"""Probers for framebus's services: each sends one message to a broker or a relay and says
what came back. The messages themselves come from framebus.testing.hostile.

Outcomes of a probe:

- ``"refused"``: an error reply carrying a reason (broker: ``ok: false`` with ``code`` and
  ``error``; relay: ``[b"error", {code, error}]``);
- ``"answered"``: an ok reply (broker: ``ok: true``; relay: a frame, or, for a ``bye``,
  which has no reply, the next request answered);
- ``"cut"``: no reply, because ZeroMQ dropped the connection for a part over the service's
  ZMQ_MAXMSGSIZE (the prober connects afresh afterwards);
- ``"silent"``: no reply at all within the timeout: a failure;
- ``"garbled"``: a reply that is neither of the above: a failure.
"""

from __future__ import annotations

import itertools
import time

import msgspec
import zmq
from zmq.utils.monitor import recv_monitor_message

from framebus.protocol import relay as wire
from framebus.protocol.broker import MAX_MESSAGE as BROKER_LIMIT
from framebus.remote.relay import MAX_MESSAGE as RELAY_LIMIT

REFUSED, ANSWERED, CUT, SILENT, GARBLED = "refused", "answered", "cut", "silent", "garbled"
#: What a service may do with any message; anything else is a failure.
FINE = (REFUSED, ANSWERED, CUT)


def oversized(message: list[bytes], limit: int) -> bool:
    """Whether ZeroMQ drops a connection that carries *message*: a part over *limit*."""
    return any(len(part) > limit for part in message)


class _Dealer:
    """A DEALER on a service, watched for the service dropping its connection."""

    def __init__(self, context: zmq.Context, address: str) -> None:
        self.socket = context.socket(zmq.DEALER)
        self.socket.linger = 0
        self.socket.sndtimeo = 1000
        self._monitor = self.socket.get_monitor_socket(zmq.EVENT_DISCONNECTED)
        self.socket.connect(address)
        self._poller = zmq.Poller()
        self._poller.register(self.socket, zmq.POLLIN)
        self._poller.register(self._monitor, zmq.POLLIN)

    def exchange(self, message: list[bytes], timeout: float) -> list[bytes] | str:
        """Send *message*; the reply, or CUT if the connection was dropped, or SILENT."""
        return self.wait(timeout) if self.send(message) else SILENT

    def send(self, message: list[bytes]) -> bool:
        try:
            self.socket.send_multipart(message)
        except zmq.Again:
            return False  # not even connected within sndtimeo
        return True

    def wait(self, timeout: float) -> list[bytes] | str:
        """The next reply within *timeout*, or CUT if the connection was dropped, or SILENT."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            events = dict(self._poller.poll(max(1, int(left * 1000))))
            if self.socket in events:
                return self.socket.recv_multipart()
            if self._monitor in events and \
                    recv_monitor_message(self._monitor)["event"] == zmq.EVENT_DISCONNECTED:
                return CUT
        return SILENT

    def close(self) -> None:
        self.socket.disable_monitor()
        self._monitor.close(linger=0)
        self.socket.close(linger=0)


class _Prober:
    """Sends one message at a time on one DEALER; connects a fresh one after a cut, a
    silence or a garbled reply, so a late reply is never taken for the next one's."""

    def __init__(self, address: str, timeout: float) -> None:
        self.address = address
        self.timeout = timeout
        self._context = zmq.Context()
        self._dealer = _Dealer(self._context, address)
        self._checker = _Dealer(self._context, address)  # for alive(), apart from the probes
        #: The last reply, parsed: the broker's map, or the relay's {"code", "error"} or
        #: {"frame": <descriptor bytes>}; None when there was none.
        self.reply: dict | None = None
        self.counts: dict[str, int] = {}

    def probe(self, message: list[bytes]) -> str:
        """Send *message*; return what came of it (REFUSED, ANSWERED, CUT, SILENT, GARBLED)."""
        outcome = self._probe(message)
        self.counts[outcome] = self.counts.get(outcome, 0) + 1
        if outcome not in (REFUSED, ANSWERED):
            self._dealer.close()
            self._dealer = _Dealer(self._context, self.address)
        return outcome

    def _probe(self, message: list[bytes]) -> str:
        raise NotImplementedError

    def close(self) -> None:
        self._dealer.close()
        self._checker.close()
        self._context.term()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class BrokerProber(_Prober):
    """Probes a broker (framebus/broker.py): every message but an oversized one must be
    answered, refused with a reason, or cut."""

    limit = BROKER_LIMIT
    _ids = itertools.count(1)

    def __init__(self, address: str, timeout: float = 1.0) -> None:
        super().__init__(address, timeout)

    def _probe(self, message: list[bytes]) -> str:
        got = self._dealer.exchange(message, self.timeout)
        if isinstance(got, str):
            self.reply = None
            return got
        self.reply = _broker_reply(got)
        return _classify_broker(self.reply)

    def alive(self, timeout: float = 1.0) -> bool:
        """Whether the broker answers a ping within *timeout* seconds."""
        rid = next(self._ids)
        ping = msgspec.msgpack.encode({"op": "ping", "id": rid})
        got = self._checker.exchange([b"", ping], timeout)
        while not isinstance(got, str):
            reply = _broker_reply(got)
            if reply is not None and reply.get("id") == rid:
                return reply.get("ok") is True
            got = self._checker.wait(timeout)  # a late answer to an earlier ping
        self._checker.close()
        self._checker = _Dealer(self._context, self.address)
        return False


def _broker_reply(frames: list[bytes]) -> dict | None:
    if len(frames) != 2 or frames[0] != b"":
        return None
    try:
        reply = msgspec.msgpack.decode(frames[1])
    except Exception:
        return None
    return reply if isinstance(reply, dict) else None


def _classify_broker(reply: dict | None) -> str:
    if reply is None:
        return GARBLED
    if reply.get("ok") is True:
        return ANSWERED
    if reply.get("ok") is False and isinstance(reply.get("code"), str) \
            and isinstance(reply.get("error"), str) and reply["error"]:
        return REFUSED
    return GARBLED


class RelayProber(_Prober):
    """Probes a relay (framebus/remote/relay.py). A ``bye`` has no reply by protocol: it
    counts as answered when the relay then refuses a bad request on the same connection."""

    limit = RELAY_LIMIT
    #: A request any relay refuses at once, whatever it serves: a want with no stream name.
    MUST_REFUSE = [msgspec.msgpack.encode({"v": wire.VERSION, "op": "want", "stream": "",
                                           "codec": "raw", "quality": 90, "token": None,
                                           "after": -1})]

    def __init__(self, address: str, timeout: float = 2.0) -> None:
        super().__init__(address, timeout)

    def _probe(self, message: list[bytes]) -> str:
        if len(message) == 1 and _is_bye(message[0]):
            # No reply, as it should be: the first one to come must be the refusal of the
            # request sent right after, which the relay reads next.
            self._dealer.send(message)
            got = self._dealer.exchange(self.MUST_REFUSE, self.timeout)
            if isinstance(got, str):
                self.reply = None
                return got
            self.reply = _relay_reply(got)
            said = self.reply and self.reply.get("code") == "bad_request" and \
                "$.stream" in self.reply["error"]
            return ANSWERED if said else GARBLED
        got = self._dealer.exchange(message, self.timeout)
        if isinstance(got, str):
            self.reply = None
            return got
        self.reply = _relay_reply(got)
        if self.reply is None:
            return GARBLED
        if got[0] == wire.SLOT:  # a frame sent from its slot: its check comes next
            check = self._dealer.wait(self.timeout)
            if isinstance(check, str) or len(check) != 2 or check[0] != wire.CHECK:
                return GARBLED
        return REFUSED if "code" in self.reply else ANSWERED

    def alive(self, timeout: float = 1.0) -> bool:
        """Whether the relay refuses a bad request (an empty stream name) within *timeout*."""
        got = self._checker.exchange(self.MUST_REFUSE, timeout)
        if isinstance(got, str) or (reply := _relay_reply(got)) is None or "code" not in reply:
            self._checker.close()
            self._checker = _Dealer(self._context, self.address)
            return False
        return True


def _is_bye(payload: bytes) -> bool:
    try:
        return wire.parse_request(payload) is None
    except Exception:
        return False


def _relay_reply(parts: list[bytes]) -> dict | None:
    if len(parts) == 2 and parts[0] == wire.ERROR:
        try:
            code, error = wire.parse_error(parts[1])
        except Exception:
            return None
        return {"code": code, "error": error} if error else None
    if len(parts) == 4 and parts[0] in (wire.FRAME, wire.SLOT):
        return {"frame": parts[1], "codec": parts[2], "bytes": len(parts[3])}
    return None
