"""The relay: serves this host's streams to subscribers on other hosts.

It reads each wanted stream from shared memory like any local subscriber (so the
decoder's frame path never knows it is there), copies frames out of the ring as
subscribers wait for them, and answers credits over ZeroMQ TCP. Flow control is per subscriber
and latest-frame: a subscriber gets one frame per credit, the newest one it does
not have, so a slow or distant subscriber never builds a queue and never slows
anyone else. Payloads are made at most once per frame and setting (raw, or JPEG
at a quality) however many subscribers share it.

Endpoints on loopback are served as they are; endpoints beyond loopback only with
CurveZMQ and an allowlist of client keys (framebus/keys.py).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass, field, replace

import cv2
import numpy as np
import zmq

from .. import config, pixfmt
from ..discovery import BrokerClient
from ..errors import FramebusError, FrameOverwritten, ProtocolError, Timeout
from ..frame import Frame
from ..protocol import relay as wire
from ..protocol.descriptor import Descriptor
from ..keys import bind_servers, is_local

log = logging.getLogger(__name__)

DEFAULT_BIND = "tcp://127.0.0.1:5556"
#: Credits a subscriber may hold at once: more are ignored, so a subscriber that
#: fires requests without reading gets no more frames in flight than this.
MAX_CREDIT = 2
CLIENT_IDLE = 30.0  # forget a subscriber silent this long
FEED_IDLE = 10.0  # stop reading a stream nobody has wanted for this long
ACTIVE = 2.0  # a subscriber that asked within this long is likely to ask again
COPY_RATE = 120.0  # most frames a second copied out for subscribers that are not waiting
FRESH = 1 / COPY_RATE  # a frame copied out this recently is as good as the newest
#: The most streams read at once and subscribers known at once: all that a flood of
#: well-formed requests can make the relay hold. Beyond them a newcomer is refused, "full".
MAX_FEEDS = 64
MAX_SUBSCRIBERS = 1024
#: A want for a stream the relay has not heard of makes it ask the broker for this host's
#: streams at once, but no more often than this (it asks every heartbeat anyway).
REFRESH_EVERY = 0.05
#: Requests over this size make ZeroMQ drop the sender's connection (ZMQ_MAXMSGSIZE).
MAX_MESSAGE = wire.MAX_REQUEST * 2
_NOTIFY = "inproc://framebus-relay-feeds"


@dataclass
class _Newest:
    """The newest frame of a stream, copied out of its ring, and its payloads by setting."""

    descriptor: Descriptor
    packed: bytes
    pixels: np.ndarray
    copied: float = field(default_factory=time.monotonic)
    payloads: dict = field(default_factory=dict)

    def payload(self, setting: tuple[str, int]):
        """The bytes to send for *setting*, made on first use and kept for the others."""
        if setting not in self.payloads:
            codec, quality = setting
            self.payloads[setting] = (memoryview(self.pixels).cast("B") if codec == "raw"
                                      else _jpeg(self.pixels, self.descriptor.fmt, quality))
        return self.payloads[setting]


def _jpeg(pixels: np.ndarray, fmt: str, quality: int) -> bytes:
    image = pixels if fmt == "gray" else pixfmt.to_bgr(pixels, fmt)
    try:
        ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    except cv2.error as exc:  # a ring of any geometry may claim to be gray, say
        raise ValueError(f"JPEG encoding of a {fmt} {pixels.shape} {pixels.dtype} frame "
                         f"failed: {exc.err}") from None
    if not ok:
        raise ValueError(f"JPEG encoding of a {fmt} {pixels.shape} frame failed")
    return data.tobytes()


class _Feed(threading.Thread):
    """Reads one stream from shared memory and copies frames out for the relay's subscribers.

    While subscribers are active it copies every frame out (and makes the JPEGs they
    asked for, here, off the relay's loop), so that a subscriber's next credit finds a
    fresh frame ready instead of waiting for the next one: at most COPY_RATE a second
    when nobody is waiting, since a producer publishing flat out would otherwise cost a
    copy per frame for frames nobody takes. A subscriber waiting with a credit gets the
    very next frame copied out. With no active subscriber, nothing is copied.
    """

    def __init__(self, name: str, broker: str, context: zmq.Context) -> None:
        super().__init__(name=f"framebus-relay-{name}", daemon=True)
        self.stream = name
        self.broker = broker
        self.newest: _Newest | None = None  # the last frame copied out
        self.latest: tuple[bytes, int] | None = None  # (token, seq) of the last frame published
        self.waiting = threading.Event()  # a subscriber holds a credit
        self.settings: frozenset[tuple[str, int]] = frozenset()  # what active ones want
        self.idle_since: float | None = None  # when its last subscriber went away
        self._context = context
        self._stopping = threading.Event()
        self._failed: set[tuple[str, int]] = set()  # settings its frames cannot be made in

    @property
    def fresh(self) -> _Newest | None:
        """The copied-out frame if it is the stream's newest or was copied a moment ago."""
        newest = self.newest
        if newest is None:
            return None
        d = newest.descriptor
        if (d.token, d.seq) == self.latest or time.monotonic() - newest.copied < FRESH:
            return newest
        return None

    def _due(self) -> bool:
        if self.waiting.is_set():
            return True
        newest = self.newest
        return bool(self.settings) and (newest is None or
                                        time.monotonic() - newest.copied >= 1 / COPY_RATE)

    def run(self) -> None:
        from ..subscriber import Subscriber

        notify = self._context.socket(zmq.PUSH)
        notify.linger = 0
        notify.connect(_NOTIFY)
        try:
            with Subscriber(self.stream, broker=self.broker, transport="shm") as sub:
                while not self._stopping.is_set():
                    try:
                        frame = sub.recv(timeout=0.25)
                    except Timeout:
                        continue
                    self.latest = (frame.token, frame.seq)
                    if self._due() and self._copy(frame):
                        try:
                            notify.send_string(self.stream, zmq.NOBLOCK)
                        except zmq.Again:
                            pass  # the relay is behind on notices: it sees the newest anyway
        except Exception:
            log.exception("%s: feed stopped", self.stream)
        finally:
            notify.close()

    def _copy(self, frame: Frame) -> bool:
        try:
            newest = _copy_out(frame)
        except FrameOverwritten:
            return False  # lapped while copying: the next frame will do
        for setting in self.settings - self._failed:
            try:
                newest.payload(setting)
            except ValueError as exc:
                self._failed.add(setting)  # said once: every frame of the ring would fail
                log.error("%s: %s", self.stream, exc)
        self.newest = newest
        return True

    def stop(self) -> None:
        self._stopping.set()


def _copy_out(frame: Frame) -> _Newest:
    """The frame's own copy (FrameOverwritten if it was lapped while copying)."""
    pixels = frame.copy()
    d = Descriptor(frame.stream, frame.generation, frame.token, frame.seq, frame.slot,
                   frame.pts, frame.time_base, frame.timestamp_ns, pixels.shape,
                   pixels.dtype.str, frame.fmt)
    return _Newest(d, d.pack(), pixels)


@dataclass
class _Subscriber:
    socket: zmq.Socket
    identity: bytes
    want: wire.Want
    credit: int = 0
    last_seen: float = 0.0
    #: Wants a stream the relay has not heard of: the stream list refresh it waits beyond.
    pending: int | None = None
    #: (token, seq) of the last frame sent to it. A credit sent before that frame arrived
    #: names an older ring, or none, and must not fetch the same frame again.
    sent: tuple[bytes, int] | None = None


class Relay:
    """Serves this host's streams to remote subscribers; ``run()`` serves until ``stop`` is set."""

    def __init__(self, binds: list[str] | None = None, *, broker: str | None = None,
                 keys_dir: str | None = None, advertise: str | None = None) -> None:
        self.binds = binds or [DEFAULT_BIND]
        self.broker = config.broker_address(broker)
        self._context = zmq.Context()
        self._sockets: list[zmq.Socket] = []
        self._keys = self._notify = None
        self._feeds: dict[str, _Feed] = {}
        self._subscribers: dict[tuple[int, bytes], _Subscriber] = {}
        self.sent = self.rejected = 0
        try:
            self._sockets, self._keys = bind_servers(self._context, self.binds, keys_dir,
                                                     "relay", _prepare)
            self.endpoint = advertise or self._advertised()
            self._notify = self._context.socket(zmq.PULL)
            self._notify.bind(_NOTIFY)
        except BaseException:
            self.close()
            raise
        self._registration = _Registration(self)

    def _advertised(self) -> str:
        """The endpoint other hosts are told: the first one beyond loopback, if any."""
        for socket in reversed(self._sockets):
            endpoint = socket.last_endpoint.decode()
            if not is_local(endpoint):
                if "://0.0.0.0:" in endpoint or "://*:" in endpoint:
                    raise FramebusError(f"bound to {endpoint}, the relay cannot tell other "
                                        "hosts its address: pass --advertise tcp://ADDRESS:PORT")
                return endpoint
        return self._sockets[0].last_endpoint.decode()

    # -- the loop ----------------------------------------------------------------

    def run(self, stop: threading.Event | None = None) -> None:
        stop = stop or threading.Event()
        registration = self._registration
        registration.start()
        poller = zmq.Poller()
        for socket in self._sockets:
            poller.register(socket, zmq.POLLIN)
        poller.register(self._notify, zmq.POLLIN)
        log.info("relay serving %s on %s (advertised as %s), broker %s", config.host_id(),
                 ", ".join(self.binds), self.endpoint, self.broker)
        next_sweep = 0.0
        try:
            while not stop.is_set():
                for socket, _ in poller.poll(100):
                    if socket is not self._notify:
                        self._on_request(socket)
                    elif stream := socket.recv_string():
                        self._on_new_frame(stream)
                    else:  # "": the registration thread has a fresh list of streams
                        self._on_streams()
                now = time.monotonic()
                if now >= next_sweep:
                    self._sweep(now)
                    next_sweep = now + 1.0
        finally:
            registration.stop()

    def _on_request(self, socket: zmq.Socket) -> None:
        parts = socket.recv_multipart()
        try:
            self._handle(socket, parts)
        except Exception as exc:
            # A bug must cost one request, not every remote reader of the host.
            log.exception("request failed")
            self._refuse(socket, parts[0], "internal", f"relay error: {exc!r}")

    def _handle(self, socket: zmq.Socket, parts: list[bytes]) -> None:
        if len(parts) != 2:
            self._refuse(socket, parts[0], "bad_request", "send one msgpack part per request")
            return
        identity, payload = parts
        try:
            want = wire.parse_request(payload)
        except ProtocolError as exc:
            self._refuse(socket, identity, "bad_request", str(exc))
            return
        key = (self._sockets.index(socket), identity)
        if want is None:  # bye
            self._subscribers.pop(key, None)
            return
        sub = self._subscribers.get(key)
        if sub is None:
            if not self._room_for_a_subscriber():
                self._refuse(socket, identity, "full", f"the relay serves {MAX_SUBSCRIBERS} "
                                                       "subscribers already, all active")
                return
            sub = self._subscribers[key] = _Subscriber(socket, identity, want)
            log.info("subscriber %s wants %s (%s)", identity.hex()[:8], want.stream,
                     want.codec if want.codec == "raw" else f"jpeg q{want.quality}")
        if sub.want.token == want.token and want.after < sub.want.after:
            # A second credit sent before the first was answered: never send a frame twice.
            want = replace(want, after=sub.want.after)
        sub.want, sub.last_seen = want, time.monotonic()
        sub.credit = min(MAX_CREDIT, sub.credit + 1)
        if want.stream in self._feeds or want.stream in self._registration.known:
            sub.pending = None
            self._start_serving(key, sub)
        else:
            # Reading a stream costs a thread: first ask the broker whether this host has
            # it, without waiting for the answer here (it comes as a notice, _on_streams).
            sub.pending = self._registration.started
            self._registration.refresh_soon()

    def _start_serving(self, key: tuple[int, bytes], sub: _Subscriber) -> None:
        feed = self._feed(sub.want.stream)
        if feed is None:
            del self._subscribers[key]
            self._refuse(sub.socket, sub.identity, "full",
                         f"the relay reads {MAX_FEEDS} streams already, all wanted: "
                         f"{sub.want.stream!r} cannot be one more")
            return
        self._serve(sub, feed)
        self._update_demand(feed)

    def _on_streams(self) -> None:
        """The broker's list of this host's streams is fresh: answer who waited for it."""
        registration = self._registration
        for key, sub in list(self._subscribers.items()):
            if sub.pending is None or registration.done <= sub.pending:
                continue  # the list was asked for before this subscriber's want came
            sub.pending = None
            if sub.want.stream in registration.known:
                self._start_serving(key, sub)
                continue
            del self._subscribers[key]
            why = "" if registration.reachable else \
                f" (the broker at {self.broker} does not answer)"
            self._refuse(sub.socket, sub.identity, "not_found",
                         f"no stream named {sub.want.stream!r} on host {config.host_id()}{why}")

    def _room_for_a_subscriber(self) -> bool:
        """Whether one more subscriber fits, forgetting the quietest if it has gone quiet."""
        if len(self._subscribers) < MAX_SUBSCRIBERS:
            return True
        key, quietest = min(self._subscribers.items(), key=lambda item: item[1].last_seen)
        if time.monotonic() - quietest.last_seen < ACTIVE:
            return False
        del self._subscribers[key]
        return True

    def _refuse(self, socket: zmq.Socket, identity: bytes, code: str, message: str) -> None:
        self.rejected += 1
        log.warning("refused a request: %s", message)
        try:
            socket.send_multipart([identity, *wire.error_reply(code, message)], zmq.NOBLOCK)
        except zmq.ZMQError:
            pass

    def _on_new_frame(self, stream: str) -> None:
        feed = self._feeds.get(stream)
        if feed is None:
            return
        for sub in list(self._subscribers.values()):
            if sub.credit and sub.want.stream == stream:
                self._serve(sub, feed)
        self._update_demand(feed)

    def _update_demand(self, feed: _Feed) -> None:
        """Tell the feed which settings its active subscribers want, and whether one waits."""
        now = time.monotonic()
        mine = [sub for sub in self._subscribers.values() if sub.want.stream == feed.stream]
        feed.settings = frozenset(sub.want.setting for sub in mine
                                  if sub.credit or now - sub.last_seen < ACTIVE)
        if any(sub.credit for sub in mine):
            feed.waiting.set()
        else:
            feed.waiting.clear()

    def _serve(self, sub: _Subscriber, feed: _Feed) -> None:
        """Send *sub* the stream's newest frame if it has a credit and not that frame yet."""
        newest = feed.fresh
        if newest is None or not sub.credit:
            return  # the feed copies the next frame out, since someone waits
        d = newest.descriptor
        for token, seq in ((sub.want.token, sub.want.after), sub.sent or (None, -1)):
            if token == d.token and d.seq <= seq:
                return  # it has this one: the next frame will come with a notice
        try:
            payload = newest.payload(sub.want.setting)
        except ValueError as exc:
            # Refused, not kept waiting: each new frame would fail again, and say so again.
            self._subscribers.pop((self._sockets.index(sub.socket), sub.identity), None)
            self._refuse(sub.socket, sub.identity, "unsupported", f"{d.stream}: {exc}")
            return
        try:
            sub.socket.send_multipart(
                [sub.identity, wire.FRAME, newest.packed, sub.want.codec.encode(), payload],
                zmq.NOBLOCK, copy=False)
        except zmq.Again:
            return  # its connection is full: it gets the newest when it drains
        self.sent += 1
        sub.credit -= 1
        sub.want = replace(sub.want, token=d.token, after=d.seq)
        sub.sent = (d.token, d.seq)

    def _feed(self, stream: str) -> _Feed | None:
        """The feed reading *stream*, started if need be; None if MAX_FEEDS are all wanted."""
        feed = self._feeds.get(stream)
        if feed is None or not feed.is_alive():
            if feed is None and len(self._feeds) >= MAX_FEEDS and not self._drop_a_feed():
                return None
            feed = self._feeds[stream] = _Feed(stream, self.broker, self._context)
            feed.start()
        feed.idle_since = None
        return feed

    def _drop_a_feed(self) -> bool:
        """Stop the feed of a stream no subscriber wants now, idle longest, to make room."""
        wanted = {sub.want.stream for sub in self._subscribers.values()}
        now = time.monotonic()
        idle = [name for name, feed in self._feeds.items()
                if name not in wanted or not feed.is_alive()]
        if not idle:
            return False
        name = min(idle, key=lambda name: self._feeds[name].idle_since or now)
        self._feeds.pop(name).stop()
        return True

    def _sweep(self, now: float) -> None:
        for key, sub in list(self._subscribers.items()):
            if now - sub.last_seen > CLIENT_IDLE:
                del self._subscribers[key]
        wanted = {sub.want.stream for sub in self._subscribers.values()}
        for name, feed in list(self._feeds.items()):
            self._update_demand(feed)  # subscribers that went quiet stop costing copies
            if name in wanted:
                continue
            feed.idle_since = feed.idle_since or now
            if now - feed.idle_since > FEED_IDLE:
                feed.stop()
                del self._feeds[name]

    def reload_keys(self) -> None:
        """Re-read the authorized client keys (SIGHUP): they apply to new connections."""
        if self._keys is not None:
            self._keys.reload()

    def close(self) -> None:
        for feed in self._feeds.values():
            feed.stop()
        for feed in self._feeds.values():
            feed.join(2)
        for socket in self._sockets:
            socket.close(linger=0)
        if self._notify is not None:
            self._notify.close(linger=0)
        if self._keys is not None:
            self._keys.stop()
        self._context.term()
        log.info("relay stopped: %d frames sent, %d requests refused", self.sent, self.rejected)


def _prepare(socket: zmq.Socket) -> None:
    socket.sndhwm = 4 * MAX_CREDIT  # a frame per credit is all a subscriber can have queued
    socket.setsockopt(zmq.MAXMSGSIZE, MAX_MESSAGE)


class _Registration(threading.Thread):
    """Tells the broker, every heartbeat, that this host's streams are served here; and
    keeps the relay's list of them, which the broker gives: every heartbeat, and at once
    (at most every REFRESH_EVERY) when a subscriber wants a stream the list lacks.

    The relay's loop reads ``known``, ``started`` and ``done``; a notice ("") on the
    feeds' socket tells it a refresh is done.
    """

    def __init__(self, relay: Relay) -> None:
        super().__init__(name="framebus-relay-registration", daemon=True)
        self._relay = relay
        self._stopping = threading.Event()
        self._wake = threading.Event()
        #: Names of the streams the broker knows on this host, as of the last refresh.
        self.known: frozenset[str] = frozenset()
        self.started = 0  # refreshes begun
        self.done = 0  # the number of the last refresh finished, whether the broker answered
        self.reachable = True  # whether it did
        self._registered = True  # whether the last heartbeat was answered, to log changes

    def refresh_soon(self) -> None:
        self._wake.set()

    def run(self) -> None:
        notify = self._relay._context.socket(zmq.PUSH)
        notify.linger = 0
        notify.connect(_NOTIFY)
        try:
            with BrokerClient(self._relay.broker, timeout=0.5) as client:
                next_beat = 0.0
                while True:
                    if time.monotonic() >= next_beat:
                        self._beat(client)
                        next_beat = time.monotonic() + config.HEARTBEAT_INTERVAL
                    self._refresh(client)
                    try:
                        notify.send_string("", zmq.NOBLOCK)
                    except zmq.Again:
                        pass  # the loop has notices to read: it will see this refresh then
                    if self._stopping.wait(REFRESH_EVERY):
                        return
                    self._wake.wait(max(0.0, next_beat - time.monotonic()))
                    self._wake.clear()  # set before this: the refresh that follows covers it
                    if self._stopping.is_set():
                        return
        finally:
            notify.close()

    def _beat(self, client: BrokerClient) -> None:
        try:
            client.request("relay", host=config.host_id(), endpoint=self._relay.endpoint,
                           pid=os.getpid())
            if not self._registered:
                log.info("broker %s reachable again", client.address)
            self._registered = True
        except FramebusError as exc:
            if self._registered:
                log.warning("broker %s: %s; retrying", client.address, exc)
            self._registered = False

    def _refresh(self, client: BrokerClient) -> None:
        self.started += 1
        number = self.started
        try:
            host = config.host_id()
            self.known = frozenset(s.name for s in client.streams() if s.host == host)
            self.reachable = True
        except FramebusError:
            self.reachable = False  # keep the last list (_beat tells the log)
        self.done = number

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()
        if self.is_alive():
            self.join(2)
