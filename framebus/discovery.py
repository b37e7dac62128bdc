"""Talking to the broker: BrokerClient.

Requests and replies are msgpack maps on a DEALER/ROUTER pair. A request
carries ``op`` and an ``id`` that the reply echoes; a reply carries ``ok``
and, when it is false, ``error`` (for people) and ``code`` (for programs).
Each is declared in framebus/protocol/broker.py, and a reply is decoded
strictly there: a client trusts nothing that answers as its broker.
Documented in docs/protocol.md.
"""

from __future__ import annotations

import itertools
import logging
import time
from typing import Any

import msgspec
import zmq

from . import config
from .errors import (
    AccessDenied,
    BrokerFull,
    BrokerRefused,
    BrokerUnavailable,
    FramebusError,
    ProtocolError,
    StreamInUse,
    StreamNotFound,
)
from .keys import is_local, secure_client
from .names import validate_stream_name
from .protocol.broker import (
    LIST_PAGE,
    MAX_REPLY,
    REPLIES,
    ListPage,
    LookupReply,
    R,
    Refusal,
    RelayInfo,
    Reply,
    StreamInfo,
    decode_reply,
    encode,
    reply_id,
)

log = logging.getLogger(__name__)

#: The most streams and relays a client takes from the pages of one listing: a broker that
#: keeps sending pages is not believed for ever.
MAX_LISTED = 1 << 16


_ERRORS = {
    "not_found": StreamNotFound,  # lookup of a name the broker does not know
    "unknown": StreamNotFound,  # heartbeat from a producer the broker has forgotten
    "in_use": StreamInUse,
    "bad_request": ProtocolError,
    "full": BrokerFull,
    "forbidden": AccessDenied,  # a registration the broker could not prove (trust.py)
}


class BrokerClient:
    """A connection to the broker. Not thread-safe: one per thread."""

    def __init__(self, address: str | None = None, *, context: zmq.Context | None = None,
                 timeout: float = 1.0) -> None:
        self.address = config.broker_address(address)
        self.timeout = timeout
        self._context = context or zmq.Context.instance()
        self._ids = itertools.count(1)
        self._socket: zmq.Socket | None = None
        self._monitor: zmq.Socket | None = None
        self._refused = False
        self._paged = True  # until a broker older than paged lists refuses a page

    def _connect(self) -> zmq.Socket:
        if self._socket is None:
            s = self._context.socket(zmq.DEALER)
            s.linger = 0
            # Queue nothing while the broker is away: fail fast instead.
            s.immediate = True
            try:
                secure_client(s, self.address)  # CurveZMQ beyond loopback
            except FramebusError:
                s.close()
                raise
            if not is_local(self.address):
                self._monitor = s.get_monitor_socket(zmq.EVENT_HANDSHAKE_FAILED_AUTH)
            s.connect(self.address)
            self._socket = s
        return self._socket

    def _reset(self) -> None:
        # A fresh socket drops replies to requests we have given up on.
        if self._socket is not None:
            self._refused = self._monitor is not None and self._monitor.poll(0) != 0
            if self._monitor is not None:
                self._socket.disable_monitor()
                self._monitor.close(linger=0)
                self._monitor = None
            self._socket.close(linger=0)
            self._socket = None

    def _unavailable(self, message: str) -> FramebusError:
        self._reset()
        if self._refused:
            return AccessDenied(f"the broker at {self.address} refused this client's key: ask "
                                "its operator to add this client's public key to its "
                                "authorized keys")
        return BrokerUnavailable(message)

    def request(self, op: str, timeout: float | None = None, **fields: Any) -> dict[str, Any]:
        """Send one request and return the reply's fields, as plain data.

        Raises BrokerUnavailable when no reply comes in time, ProtocolError when the
        reply is malformed, and the matching FramebusError when the broker refuses.
        """
        reply = self._call(op, REPLIES.get(op, Reply), timeout, **fields)
        return msgspec.to_builtins(reply, builtin_types=(bytes,))

    def _call(self, op: str, expected: type[R], timeout: float | None, **fields: Any) -> R:
        reply = self._exchange(op, expected, timeout, **fields)
        if isinstance(reply, Refusal):
            raise _ERRORS.get(reply.code, BrokerRefused)(reply.error)
        return reply

    def _exchange(self, op: str, expected: type[R], timeout: float | None,
                  **fields: Any) -> R | Refusal:
        """One request, and its reply or refusal; BrokerUnavailable or ProtocolError if none."""
        timeout = self.timeout if timeout is None else timeout
        s = self._connect()
        rid = next(self._ids)
        payload = encode({"op": op, "id": rid, **fields})
        if s.poll(int(timeout * 1000), zmq.POLLOUT) == 0:
            raise self._unavailable(f"broker at {self.address} is not reachable")
        s.send_multipart([b"", payload])
        deadline = time.monotonic() + timeout
        while s.poll(max(0, int((deadline - time.monotonic()) * 1000)), zmq.POLLIN):
            frames = s.recv_multipart()
            if len(frames) != 2 or frames[0] != b"":
                log.warning("ignoring a broker reply of %d frames", len(frames))
            elif len(frames[1]) > MAX_REPLY:  # its id unread: said, not taken for silence
                raise ProtocolError(f"a reply of {len(frames[1])} bytes from the broker at "
                                    f"{self.address} exceeds {MAX_REPLY}")
            elif reply_id(frames[1]) == rid:  # else a late reply to an earlier request
                return decode_reply(frames[1], expected)
        raise self._unavailable(f"broker at {self.address} did not answer within {timeout:.1f} s")

    def lookup(self, name: str, timeout: float | None = None,
               kind: str = "frames") -> StreamInfo:
        """Stream *name*: its frames, or (kind "packets") its packet stream."""
        validate_stream_name(name)
        extra = {} if kind == "frames" else {"kind": kind}  # what a broker of old knows
        return self._call("lookup", LookupReply, timeout, name=name, **extra).stream

    def streams(self, timeout: float | None = None, host: str | None = None,
                kind: str = "frames") -> list[StreamInfo]:
        """The streams the broker knows (of *host* only, if given), live or recently dead:
        frame streams, or (*kind*) packet streams, or "all"."""
        return self.listing(timeout, host, kind)[0]

    def relays(self, timeout: float | None = None) -> list[dict[str, Any]]:
        """The relays the broker knows: host, endpoint, pid, alive."""
        return [msgspec.structs.asdict(r) for r in self.listing(timeout)[1]]

    def listing(self, timeout: float | None = None, host: str | None = None,
                kind: str = "frames") -> tuple[list[StreamInfo], list[RelayInfo]]:
        """Every stream and relay the broker knows (of *host* only, if given), read page by
        page, each page a request of its own with its own *timeout*."""
        streams: list[StreamInfo] = []
        relays: list[RelayInfo] = []
        after: str | None = None
        while True:
            page = self._page(after, host, timeout, kind)
            streams += page.streams
            relays += page.relays
            if page.next is None:
                return streams, relays
            if page.next == after or len(streams) + len(relays) > MAX_LISTED:
                raise ProtocolError(f"the broker at {self.address} sends pages that never end")
            after = page.next

    def _page(self, after: str | None, host: str | None, timeout: float | None,
              kind: str = "frames") -> ListPage:
        """The page of the listing after *after*; all of it from a broker older than pages."""
        if self._paged:
            where = {k: v for k, v in (("after", after), ("host", host)) if v is not None}
            if kind != "frames":  # a broker older than packet streams knows frames alone
                where["kind"] = kind
            reply = self._exchange("list", ListPage, timeout, limit=LIST_PAGE, **where)
            if not isinstance(reply, Refusal):
                return reply
            if reply.code != "bad_request" or after is not None:
                raise _ERRORS.get(reply.code, BrokerRefused)(reply.error)
            self._paged = False  # it knows no `limit`: it answers a whole list, as before
        page = self._call("list", ListPage, timeout)
        if host is not None:  # an older broker knows no `host` either
            page.streams = [s for s in page.streams if s.host == host]
            page.relays = [r for r in page.relays if r.host == host]
        return page

    def close(self) -> None:
        self._reset()

    def __enter__(self) -> BrokerClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def broker_answers(address: str | None = None, timeout: float = 0.3) -> bool:
    """Whether a broker answers a ping at *address* within *timeout* seconds."""
    try:
        with BrokerClient(address, timeout=timeout) as client:
            client.request("ping")
        return True
    except BrokerUnavailable:
        return False


def streams(broker: str | None = None, timeout: float = 1.0) -> list[StreamInfo]:
    """Every stream the broker knows, live or recently dead."""
    with BrokerClient(broker, timeout=timeout) as client:
        return client.streams()
