"""The broker: discovery and liveness of streams.

Producers register their stream and heartbeat; clients look streams up and
list them. The broker holds no frames and is no hop on the frame path: when
it is down, frames keep flowing to subscribers already connected, and
everyone re-registers and re-resolves when it returns.

A producer silent for ``dead_after`` seconds is marked dead, and if it ran
on this host and its process is gone, its ring segment is reclaimed. Every few
seconds, and at its start, the broker also reclaims any ring and socket file of
this host whose producer is gone, known to it or not (framebus/leftovers.py).
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgpack
import zmq

from . import config
from .errors import FramebusError, InvalidName
from .leftovers import reclaim_stale, remove_dead_socket
from .names import validate_stream_name
from .protocol.broker import MAX_MESSAGE, StreamInfo
from .keys import bind_servers
from .shm import reclaim
from .shm.layout import MAX_NDIM
from .shm.segment import pid_alive

log = logging.getLogger(__name__)

_SEGMENT = re.compile(r"/[A-Za-z0-9][A-Za-z0-9._-]{0,200}")

MAX_FIGURES = 16
#: The most streams and relays the broker keeps. Anyone who can reach it may register, so
#: without a cap a flood of well-formed registrations would grow it for FORGET_AFTER; and
#: `framebus ls` must still fit the whole list in one reply. A dead entry makes room for a
#: new one; only when all are alive is a newcomer refused, with code "full".
MAX_STREAMS = 256
MAX_RELAYS = 64
#: The largest pid: pid_t is 32 bits, and the kernel is asked about local pids.
MAX_PID = 2**31 - 1

#: Dead streams stay listed (as dead) this long, so `framebus ls` can show them.
FORGET_AFTER = 300.0
#: How often the broker looks for rings and socket files that killed producers left.
LEFTOVERS_EVERY = 5.0


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
    last_seen: float  # monotonic time of the last register or heartbeat
    frame_age_at_last_seen: float | None = None

    def snapshot(self, now: float) -> dict:
        wire = self.info.to_wire()
        if self.frame_age_at_last_seen is not None:
            wire["age"] = self.frame_age_at_last_seen + (now - self.last_seen)
        return wire


@dataclass
class _Relay:
    endpoint: str
    pid: int
    last_seen: float


class Broker:
    """The discovery service. ``run()`` serves until ``stop`` is set."""

    def __init__(self, bind: str | list[str] | None = None, *,
                 context: zmq.Context | None = None, keys_dir: str | None = None,
                 dead_after: float = config.DEAD_AFTER, forget_after: float = FORGET_AFTER) -> None:
        binds = [bind] if isinstance(bind, str) else list(bind or [])
        self.binds = binds or [config.broker_address()]
        self.address = self.binds[0]
        self.host = config.host_id()
        self.dead_after = dead_after
        self.forget_after = forget_after
        self._entries: dict[str, _Entry] = {}
        self._relays: dict[str, _Relay] = {}
        self._context = context or zmq.Context.instance()
        self._sockets, self._keys = bind_servers(self._context, self.binds, keys_dir, "broker",
                                                 _limit_message_size)
        self.requests = 0
        self.rejected = 0

    def run(self, stop: threading.Event | None = None) -> None:
        log.info("broker serving on %s (host %s)", ", ".join(self.binds), self.host)
        stop = stop or threading.Event()
        poller = zmq.Poller()
        for socket in self._sockets:
            poller.register(socket, zmq.POLLIN)
        next_sweep = next_leftovers = 0.0
        while not stop.is_set():
            for socket, _ in poller.poll(100):
                self._serve_one(socket, socket.recv_multipart())
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

    def _serve_one(self, socket: zmq.Socket, frames: list[bytes]) -> None:
        self.requests += 1
        # DEALER clients send [empty, payload]; ROUTER prepends their identity, so there
        # are always at least two frames and always someone to answer.
        identity, rid = frames[0], None
        try:
            if len(frames) != 3 or frames[1] != b"":
                raise BadRequest(f"malformed envelope of {len(frames) - 1} frames: "
                                 "send [empty, msgpack]")
            request = _decode(frames[2])
            rid = request.get("id")
            op = request.get("op")
            # An op may decode to any msgpack value, a list too: unhashable, no dict key.
            handler = self._handlers.get(op) if isinstance(op, str) else None
            if handler is None:
                raise BadRequest(f"unknown op {op!r}")
            reply = handler(self, request)
        except InvalidName as exc:
            reply = {"ok": False, "code": "bad_request", "error": str(exc)}
        except Refused as exc:
            reply = {"ok": False, "code": exc.code, "error": str(exc)}
        except Exception as exc:
            # A bug must cost one request, not the discovery service of the whole site.
            log.exception("request failed")
            reply = {"ok": False, "code": "internal", "error": f"broker error: {exc!r}"}
        if not reply.get("ok"):
            self.rejected += 1
            log.info("refused a request: %s", reply["error"])
        reply["id"] = rid if _is_int(rid) else None
        self._reply(socket, identity, reply)

    def _reply(self, socket: zmq.Socket, identity: bytes, reply: dict) -> None:
        try:
            socket.send_multipart([identity, b"", msgpack.packb(reply)], zmq.NOBLOCK)
        except zmq.Again:
            log.warning("dropped a reply to a client that is not reading")

    def _register(self, req: dict) -> dict:
        info = _stream_info(req)
        entry = self._entries.get(info.name)
        if (entry and entry.info.alive and entry.info.token != info.token
                and not _same_producer(entry.info, info) and self._still_running(entry)):
            raise Refused("in_use", f"stream {info.name!r} is already published by pid "
                                    f"{entry.info.pid} on host {entry.info.host}")
        if entry is None:
            self._make_room(self._entries, MAX_STREAMS, lambda e: not e.info.alive,
                            "stream", info.name)
        if entry and entry.info.token != info.token:
            self._reclaim(entry)
        self._entries[info.name] = _Entry(info, time.monotonic())
        log.info("registered %s: %s %s from pid %d on %s", info.name, info.shape, info.fmt,
                 info.pid, info.host)
        return {"ok": True}

    def _heartbeat(self, req: dict) -> dict:
        name = validate_stream_name(req.get("name"))
        token = _token_field(req)
        entry = self._entries.get(name)
        if entry is None or entry.info.token != token:
            raise Refused("unknown", f"stream {name!r} is not registered with this token")
        frames, fps, age = req.get("frames", 0), req.get("fps", 0.0), req.get("age")
        subscribers = req.get("subscribers", 0)
        if not _is_int(frames) or not _is_int(subscribers) or not isinstance(fps, (int, float)) \
                or not (age is None or isinstance(age, (int, float))):
            raise BadRequest("heartbeat figures must be numbers")
        figures = _figures_field(req)
        if not entry.info.alive:
            log.info("stream %s is alive again", name)
        entry.info.alive = True
        entry.info.frames, entry.info.fps = frames, float(fps)
        entry.info.subscribers, entry.info.figures = subscribers, figures
        entry.last_seen = time.monotonic()
        entry.frame_age_at_last_seen = None if age is None else float(age)
        return {"ok": True}

    def _unregister(self, req: dict) -> dict:
        name = validate_stream_name(req.get("name"))
        entry = self._entries.get(name)
        if entry is not None and entry.info.token == req.get("token"):
            del self._entries[name]
            log.info("unregistered %s", name)
        return {"ok": True}

    def _lookup(self, req: dict) -> dict:
        name = validate_stream_name(req.get("name"))
        entry = self._entries.get(name)
        if entry is None:
            raise Refused("not_found", f"no stream named {name!r}")
        return {"ok": True, "stream": self._describe(entry, time.monotonic())}

    def _list(self, req: dict) -> dict:
        now = time.monotonic()
        return {"ok": True,
                "streams": [self._describe(e, now) for _, e in sorted(self._entries.items())],
                "relays": [{"host": host, "endpoint": r.endpoint, "pid": r.pid,
                            "alive": now - r.last_seen <= self.dead_after}
                           for host, r in sorted(self._relays.items())]}

    def _describe(self, entry: _Entry, now: float) -> dict:
        """A stream as clients see it: with the relay that serves its host, if one is alive."""
        wire = entry.snapshot(now)
        relay = self._relays.get(entry.info.host)
        wire["relay"] = relay.endpoint if relay and now - relay.last_seen <= self.dead_after \
            else None
        return wire

    def _relay(self, req: dict) -> dict:
        """A relay says it serves its host's streams (sent again every heartbeat)."""
        host = _str_field(req, "host")
        endpoint = _str_field(req, "endpoint")
        if not endpoint.startswith("tcp://"):
            raise BadRequest("field 'endpoint' of a relay must be a tcp:// address")
        pid = _int_field(req, "pid", 1, MAX_PID)
        known = self._relays.get(host)
        if known is None:
            now = time.monotonic()
            self._make_room(self._relays, MAX_RELAYS,
                            lambda r: now - r.last_seen > self.dead_after,
                            "relay of host", host)
        if known is None or (known.endpoint, known.pid) != (endpoint, pid):
            log.info("relay for host %s at %s (pid %d)", host, endpoint, pid)
        self._relays[host] = _Relay(endpoint, pid, time.monotonic())
        return {"ok": True}

    def _ping(self, req: dict) -> dict:
        return {"ok": True, "host": self.host}

    @staticmethod
    def _make_room(table: dict, cap: int, dead: Callable[[Any], bool], what: str,
                   newcomer: str) -> None:
        """Room in *table* for one more: if it is full, forget the dead entry silent longest."""
        if len(table) < cap:
            return
        gone = [key for key, value in table.items() if dead(value)]
        if not gone:
            raise Refused("full", f"no room for {what} {newcomer!r}: the broker keeps at most "
                                  f"{cap}, and all of them are alive")
        oldest = min(gone, key=lambda key: table[key].last_seen)
        log.info("forgot the dead %s %s to make room for %s", what, oldest, newcomer)
        del table[oldest]

    _handlers = {"register": _register, "heartbeat": _heartbeat, "unregister": _unregister,
                 "lookup": _lookup, "list": _list, "ping": _ping, "relay": _relay}

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
        if info.host == self.host and not pid_alive(info.pid):
            if reclaim(info.segment, info.token):
                remove_dead_socket(info.name)


def _limit_message_size(socket: zmq.Socket) -> None:
    # An oversized message drops its sender's connection instead of our memory.
    socket.setsockopt(zmq.MAXMSGSIZE, MAX_MESSAGE)


def _same_producer(a: StreamInfo, b: StreamInfo) -> bool:
    """The same process: a new ring generation of a live producer, not a rival."""
    return a.host == b.host and a.pid == b.pid


def _decode(payload: bytes) -> dict:
    try:
        request = msgpack.unpackb(payload, raw=False, strict_map_key=True, max_str_len=4096,
                                  max_bin_len=4096, max_array_len=64, max_map_len=64)
    except Exception as exc:
        raise BadRequest(f"request is not valid msgpack: {type(exc).__name__}") from None
    if not isinstance(request, dict):
        raise BadRequest("request must be a msgpack map")
    return request


def _is_int(value: object) -> bool:
    return type(value) is int and -(2**63) <= value < 2**63


def _str_field(req: dict, key: str, limit: int = 255) -> str:
    value = req.get(key)
    if not isinstance(value, str) or not 0 < len(value) <= limit or not value.isprintable():
        raise BadRequest(f"field {key!r} must be a printable string of 1 to {limit} characters")
    return value


def _int_field(req: dict, key: str, lo: int, hi: int) -> int:
    value = req.get(key)
    if not _is_int(value) or not lo <= value <= hi:
        raise BadRequest(f"field {key!r} must be an integer in [{lo}, {hi}]")
    return value


def _token_field(req: dict) -> bytes:
    token = req.get("token")
    if not isinstance(token, bytes) or len(token) != 16:
        raise BadRequest("field 'token' must be 16 bytes")
    return token


def _figures_field(req: dict) -> dict:
    """A producer's own figures: a small map of short names to numbers."""
    figures = req.get("figures", {})
    if not isinstance(figures, dict) or len(figures) > MAX_FIGURES or not all(
            isinstance(k, str) and 0 < len(k) <= 32 and k.isidentifier()
            and isinstance(v, (int, float)) and not isinstance(v, bool)
            for k, v in figures.items()):
        raise BadRequest(f"field 'figures' must map at most {MAX_FIGURES} names to numbers")
    return figures


def _stream_info(req: dict) -> StreamInfo:
    token = _token_field(req)
    shape = req.get("shape")
    if (not isinstance(shape, list) or not 1 <= len(shape) <= MAX_NDIM
            or not all(_is_int(n) and 0 < n < 2**31 for n in shape)):
        raise BadRequest(f"field 'shape' must be a list of 1 to {MAX_NDIM} positive integers")
    endpoint = _str_field(req, "endpoint")
    if not endpoint.startswith(("ipc://", "tcp://")):
        raise BadRequest("field 'endpoint' must be an ipc:// or tcp:// address")
    name = validate_stream_name(req.get("name"))
    segment = _str_field(req, "segment")
    if not _SEGMENT.fullmatch(segment) or not segment.endswith("." + name):
        raise BadRequest(f"field 'segment' must be a ring name ending in '.{name}'")
    return StreamInfo(
        name=name,
        host=_str_field(req, "host"),
        pid=_int_field(req, "pid", 1, MAX_PID),
        segment=segment,
        endpoint=endpoint,
        token=token,
        generation=_int_field(req, "generation", 0, 2**63 - 1),
        shape=tuple(shape),
        dtype=_str_field(req, "dtype", 15),
        fmt=_str_field(req, "fmt", 15),
        slots=_int_field(req, "slots", 1, 1024),
    )
