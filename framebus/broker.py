"""The broker: discovery and liveness of streams.

Producers register their stream (its frames, or its packets: ``kind``) and heartbeat;
clients look streams up and list them. The broker holds no frames and is no hop on the
frame path: when it is down, frames keep flowing to subscribers already connected, and
everyone re-registers and re-resolves when it returns.

A producer silent for ``dead_after`` seconds is marked dead, and if it ran on this host
and its process is gone, its ring is reclaimed. Every few seconds, and at its start, the
broker also reclaims any ring and socket file of this host whose producer is gone, known
to it or not (framebus/leftovers.py).

Its requests and replies are declared in framebus/protocol/broker.py, and each request is
decoded strictly there before a handler here sees it; what is left here is what the
broker does with them: the caps, liveness and reclaiming.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgspec
import zmq

from . import config
from .errors import FramebusError, ProtocolError
from .keys import bind_servers
from .leftovers import reclaim_stale, remove_dead_socket
from .packets import where as packets
from .protocol.broker import (
    LIST_PAGE,
    MAX_MESSAGE,
    MAX_RELAYS,
    MAX_STREAMS,
    Heartbeat,
    Listing,
    ListPage,
    ListReply,
    Lookup,
    LookupReply,
    Ping,
    PingReply,
    Refusal,
    Register,
    Relay,
    RelayInfo,
    Reply,
    StreamInfo,
    Unregister,
    decode_request,
    encode,
    entry_key,
    page,
    request_id,
)
from .protocol.fields import printable
from .shm import reclaim
from .shm.segment import pid_alive
from .support.throttle import Throttle
from .trust import Gatekeeper, Origin, Untrusted, same_secret

log = logging.getLogger(__name__)

# MAX_STREAMS, MAX_RELAYS: the broker's caps unless told (`framebus broker --max-streams`).
# Anyone who can reach it may register: without a cap a flood of registrations would grow it
# for FORGET_AFTER. A dead entry makes room for a new one; only when all are alive is a
# newcomer refused, "full". `framebus ls` reads the list in pages (LIST_PAGE).

#: Dead streams stay listed (as dead) this long, so `framebus ls` can show them.
FORGET_AFTER = 300.0
#: How often the broker looks for rings and socket files that killed producers left.
LEFTOVERS_EVERY = 5.0
#: Requests served from one socket before the others are looked at again: a socket is
#: drained without a poll per message (the cost that bounded the broker, by py-spy), yet a
#: flood on one endpoint cannot starve another.
DRAIN_BATCH = 256
_NOBLOCK = int(zmq.NOBLOCK)  # an int: pyzmq's Flag arithmetic costs per call
#: Refusals are logged at most once in this many seconds per code, with how many went unsaid
#: (each at debug level): a flood of bad requests, or a subscriber asking again and again for
#: a stream that is not there, must not become a flood of logs. ``rejected`` counts them all.
REFUSALS_LOGGED = 10.0


class Refused(FramebusError):
    """A request the broker answers with an error; ``code`` tells programs which."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class BadRequest(Refused):
    """A request that does not follow the protocol."""

    def __init__(self, message: str) -> None:
        super().__init__("bad_request", message)


@dataclass
class _Entry:
    info: StreamInfo
    secret: bytes  # the producer's (trust.py): replacing, heartbeating, unregistering need it
    last_seen: float  # monotonic time of the last register or heartbeat
    frame_age_at_last_seen: float | None = None

    def snapshot(self, now: float, relay: str | None) -> StreamInfo:
        age = self.frame_age_at_last_seen
        return msgspec.structs.replace(
            self.info, relay=relay, age=None if age is None else age + (now - self.last_seen))


@dataclass
class _Relay:
    endpoint: str
    pid: int
    last_seen: float


class Broker:
    """The discovery service. ``run()`` serves until ``stop`` is set."""

    def __init__(self, bind: str | list[str] | None = None, *,
                 context: zmq.Context | None = None, keys_dir: str | None = None,
                 dead_after: float = config.DEAD_AFTER, forget_after: float = FORGET_AFTER,
                 max_streams: int | None = None, max_relays: int | None = None,
                 trust_loopback: bool = False) -> None:
        binds = [bind] if isinstance(bind, str) else list(bind or [])
        self.binds = binds or [config.broker_address()]
        self.address = self.binds[0]
        self.host = config.host_id()
        self._gate = Gatekeeper(self.host, trust_loopback)
        self._origin = Origin()  # of the request being served
        self.dead_after = dead_after
        self.forget_after = forget_after
        # None: the module's caps, read now rather than when this was defined.
        self.max_streams = MAX_STREAMS if max_streams is None else max_streams
        self.max_relays = MAX_RELAYS if max_relays is None else max_relays
        if self.max_streams < 1 or self.max_relays < 1:
            raise ValueError(f"the broker's caps must be at least 1, got {self.max_streams} "
                             f"streams and {self.max_relays} relays")
        self._entries: dict[str, _Entry] = {}
        self._relays: dict[str, _Relay] = {}
        self._context = context or zmq.Context.instance()
        self._sockets, self._keys = bind_servers(self._context, self.binds, keys_dir, "broker",
                                                 _limit_message_size)
        self.requests = 0
        self.rejected = 0
        self._refusals = Throttle(log, REFUSALS_LOGGED)

    def run(self, stop: threading.Event | None = None) -> None:
        log.info("broker serving on %s (host %s)", ", ".join(self.binds), self.host)
        stop = stop or threading.Event()
        poller = zmq.Poller()
        for socket in self._sockets:
            poller.register(socket, zmq.POLLIN)
        next_sweep = next_leftovers = 0.0
        while not stop.is_set():
            for socket, _ in poller.poll(100):
                self._serve_ready(socket)
            now = time.monotonic()
            if now >= next_sweep:
                self._sweep(now)
                next_sweep = now + 0.1
            if now >= next_leftovers:
                reclaim_stale()
                next_leftovers = now + LEFTOVERS_EVERY

    def reload_keys(self) -> None:
        """Re-read the authorized client keys (SIGHUP): they apply to new connections."""
        if self._keys is not None:
            self._keys.reload()

    def close(self) -> None:
        for socket in self._sockets:
            socket.close(linger=0)
        if self._keys is not None:
            self._keys.stop()

    # -- requests ------------------------------------------------------------

    def _serve_ready(self, socket: zmq.Socket) -> None:
        """Serve the requests waiting on *socket*, up to DRAIN_BATCH of them."""
        keyed = bool(socket.curve_server)
        for _ in range(DRAIN_BATCH):
            try:
                if keyed:
                    self._serve_keyed(socket, socket.recv_multipart(_NOBLOCK, copy=False))
                else:
                    self._origin = Origin()
                    self._serve_one(socket, socket.recv_multipart(_NOBLOCK))
            except zmq.Again:
                return

    def _serve_keyed(self, socket: zmq.Socket, frames: list[zmq.Frame]) -> None:
        """A request of a CurveZMQ socket, with the client key its authenticator vouched for
        (ZeroMQ's User-Id), which registrations need."""
        try:
            self._origin = Origin(str(frames[-1].get("User-Id")))
        except zmq.ZMQError:  # no authenticator answered for it: one binding for all such
            self._origin = Origin("(unidentified)")
        self._serve_one(socket, [frame.bytes for frame in frames])

    def _serve_one(self, socket: zmq.Socket, frames: list[bytes]) -> None:
        self.requests += 1
        # DEALER clients send [empty, payload]; ROUTER prepends their identity, so there
        # are always at least two frames and always someone to answer.
        identity = frames[0]
        reply: Reply | Refusal
        try:
            if len(frames) != 3 or frames[1] != b"":
                raise BadRequest(f"malformed envelope of {len(frames) - 1} frames: "
                                 "send [empty, msgpack]")
            try:
                request = decode_request(frames[2])
            except ProtocolError as exc:
                raise BadRequest(str(exc)) from None
            reply = self._handlers[type(request)](self, request)
        except Untrusted as exc:
            reply = Refusal(code="forbidden", error=printable(str(exc))[:1024])
        except Refused as exc:
            reply = Refusal(code=exc.code, error=printable(str(exc))[:1024])
        except Exception as exc:
            # A bug must cost one request, not the discovery service of the whole site.
            log.exception("request failed")
            reply = Refusal(code="internal", error=printable(f"broker error: {exc!r}")[:1024])
        if isinstance(reply, Refusal):
            self._refused(reply)
        reply.id = request_id(frames[2]) if len(frames) == 3 else None
        self._reply(socket, identity, reply)

    def _refused(self, refusal: Refusal) -> None:
        """Count a refusal; log it, unless one of its code was logged lately (then at debug)."""
        self.rejected += 1
        if not self._refusals.warning("refused a request (%s): %s", refusal.code,
                                      refusal.error, key=refusal.code):
            log.debug("refused a request (%s): %s", refusal.code, refusal.error)

    def _reply(self, socket: zmq.Socket, identity: bytes, reply: Reply | Refusal) -> None:
        try:
            socket.send_multipart([identity, b"", encode(reply)], _NOBLOCK)
        except zmq.Again:
            log.warning("dropped a reply to a client that is not reading")

    def _register(self, req: Register) -> Reply:
        info = req.info()
        self._gate.check_host(info.host, self._origin, f"stream {info.name!r}")
        if info.host == self.host:
            self._gate.check_ring(info.segment, info.token, info.pid, self._origin,
                                  read=packets.READ_HEADER[info.kind])
        key = entry_key(info.name, info.kind)
        entry = self._entries.get(key)
        if (entry and entry.info.alive and not same_secret(entry.secret, req.secret)
                and self._still_running(entry)):
            raise Refused("in_use", f"stream {info.name!r} is already published by pid "
                                    f"{entry.info.pid} on host {entry.info.host}")
        if entry is None:
            self._make_room(self._entries, self.max_streams, lambda e: not e.info.alive,
                            "streams", f"stream {info.name!r}")
        if entry and entry.info.token != info.token:
            self._reclaim(entry)
        self._entries[key] = _Entry(info, req.secret, time.monotonic())
        log.info("registered %s: %s %s from pid %d on %s", info.name, info.shape, info.fmt,
                 info.pid, info.host)
        return Reply()

    def _heartbeat(self, req: Heartbeat) -> Reply:
        entry = self._entries.get(entry_key(req.name, req.kind))
        if (entry is None or entry.info.token != req.token
                or not same_secret(entry.secret, req.secret)):
            raise Refused("unknown", f"stream {req.name!r} is not registered with this token")
        if not entry.info.alive:
            log.info("stream %s is alive again", req.name)
        info = entry.info
        info.alive, info.frames, info.fps = True, req.frames, req.fps
        info.subscribers, info.figures = req.subscribers, req.figures
        entry.last_seen = time.monotonic()
        entry.frame_age_at_last_seen = req.age
        return Reply()

    def _unregister(self, req: Unregister) -> Reply:
        entry = self._entries.get(key := entry_key(req.name, req.kind))
        if (entry is None or entry.info.token != req.token
                or not same_secret(entry.secret, req.secret)):
            raise Refused("unknown", f"stream {req.name!r} is not registered with this token")
        del self._entries[key]
        log.info("unregistered %s", req.name)
        return Reply()

    def _lookup(self, req: Lookup) -> LookupReply:
        entry = self._entries.get(entry_key(req.name, req.kind))
        if entry is None:
            raise Refused("not_found", f"no stream named {req.name!r}")
        return LookupReply(stream=self._describe(entry, time.monotonic()))

    def _list(self, req: Listing) -> ListReply:
        """Everything (no ``limit``, as before pages), or the page that starts after ``after``."""
        now = time.monotonic()
        names = sorted(n for n, e in self._entries.items() if req.shows(e.info))
        hosts = sorted(h for h in self._relays if req.host in (None, h))
        limit = None if req.limit is None else min(req.limit, LIST_PAGE)
        names, hosts, after = page(names, hosts, req.after, limit)
        streams = [self._describe(self._entries[name], now) for name in names]
        relays = [RelayInfo(host=host, endpoint=r.endpoint, pid=r.pid,
                            alive=now - r.last_seen <= self.dead_after)
                  for host, r in ((host, self._relays[host]) for host in hosts)]
        if limit is None:
            return ListReply(streams=streams, relays=relays)
        return ListPage(streams=streams, relays=relays, next=after)

    def _describe(self, entry: _Entry, now: float) -> StreamInfo:
        """A stream as clients see it: with the relay that serves its host, if one is alive."""
        relay = self._relays.get(entry.info.host)
        alive = relay is not None and now - relay.last_seen <= self.dead_after
        return entry.snapshot(now, relay.endpoint if relay and alive else None)

    def _relay(self, req: Relay) -> Reply:
        """A relay says it serves its host's streams (sent again every heartbeat)."""
        host, endpoint, pid = req.host, req.endpoint, req.pid
        self._gate.check_host(host, self._origin, f"the relay of host {host!r}")
        known = self._relays.get(host)
        if host == self.host and (known is None or (known.endpoint, known.pid) != (endpoint, pid)):
            self._gate.check_relay(endpoint, pid, self._origin)  # once per claim: it reads /proc
        if known is None:
            now = time.monotonic()
            self._make_room(self._relays, self.max_relays,
                            lambda r: now - r.last_seen > self.dead_after,
                            "relays", f"the relay of host {host!r}")
        if known is None or (known.endpoint, known.pid) != (endpoint, pid):
            log.info("relay for host %s at %s (pid %d)", host, endpoint, pid)
        self._relays[host] = _Relay(endpoint, pid, time.monotonic())
        return Reply()

    def _ping(self, req: Ping) -> PingReply:
        return PingReply(host=self.host)

    @staticmethod
    def _make_room(table: dict, cap: int, dead: Callable[[Any], bool], what: str,
                   newcomer: str) -> None:
        """Room in *table* for one more: if it is full, forget the dead entry silent longest.

        The refusal names the cap: a producer refused says it in its warning."""
        if len(table) < cap:
            return
        gone = [key for key, value in table.items() if dead(value)]
        if not gone:
            raise Refused("full", f"no room for {newcomer}: the broker keeps at most "
                                  f"{cap} {what}, and all of them are alive")
        oldest = min(gone, key=lambda key: table[key].last_seen)
        log.info("forgot %r, dead, to make room for %s", oldest, newcomer)
        del table[oldest]

    _handlers: dict[type, Callable[[Broker, Any], Reply]] = {
        Register: _register, Heartbeat: _heartbeat, Unregister: _unregister, Lookup: _lookup,
        Listing: _list, Ping: _ping, Relay: _relay}

    # -- liveness --------------------------------------------------------------

    def _sweep(self, now: float) -> None:
        for host, relay in list(self._relays.items()):
            if now - relay.last_seen > self.forget_after:
                del self._relays[host]
        for name, entry in list(self._entries.items()):
            silent = now - entry.last_seen
            if entry.info.alive and silent > self.dead_after:
                entry.info.alive = False
                entry.info.fps = 0.0
                log.warning("stream %s: producer pid %d silent for %.1f s, marked dead",
                            name, entry.info.pid, silent)
                self._reclaim(entry)
            elif not entry.info.alive and silent > self.forget_after:
                del self._entries[name]

    def _still_running(self, entry: _Entry) -> bool:
        """Whether the registered producer may still be running.

        On this host we can ask the kernel, so a producer restarted right
        after a crash need not wait out the heartbeat timeout.
        """
        if entry.info.host == self.host:
            return pid_alive(entry.info.pid)
        return time.monotonic() - entry.last_seen <= self.dead_after

    def _reclaim(self, entry: _Entry) -> None:
        info = entry.info
        if info.host != self.host or pid_alive(info.pid):
            return
        if info.kind == "packets":  # its socket file goes with the broker's sweep
            packets.reclaim(info.segment, info.token)
        elif reclaim(info.segment, info.token):
            remove_dead_socket(info.name)


def _limit_message_size(socket: zmq.Socket) -> None:
    # An oversized message drops its sender's connection instead of our memory.
    socket.setsockopt(zmq.MAXMSGSIZE, MAX_MESSAGE)
