"""The relay: serves this host's streams to subscribers on other hosts.

It reads each wanted stream from shared memory like any local subscriber (so the
decoder's frame path never knows it is there), copies frames out of the ring as
subscribers wait for them, and answers credits over ZeroMQ TCP. Flow control is per subscriber
and latest-frame: a subscriber gets one frame per credit, the newest one it does
not have, so a slow or distant subscriber never builds a queue and never slows
anyone else. Payloads are made at most once per frame and setting (raw, or JPEG
at a quality) however many subscribers share it.

Endpoints on loopback are served as they are; endpoints beyond loopback only with
CurveZMQ and an allowlist of client keys (framebus/remote/keys.py).
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
from ..descriptor import Descriptor
from ..discovery import BrokerClient
from ..errors import FrameOverwritten, FramebusError, ProtocolError, Timeout
from ..frame import Frame
from . import wire
from .keys import bind_servers, is_local

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
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
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
        for setting in self.settings:
            try:
                newest.payload(setting)
            except ValueError as exc:
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
        registration = _Registration(self)
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
                    if socket is self._notify:
                        self._on_new_frame(socket.recv_string())
                    else:
                        self._on_request(socket)
                now = time.monotonic()
                if now >= next_sweep:
                    self._sweep(now)
                    next_sweep = now + 1.0
        finally:
            registration.stop()

    def _on_request(self, socket: zmq.Socket) -> None:
        parts = socket.recv_multipart()
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
            sub = self._subscribers[key] = _Subscriber(socket, identity, want)
            log.info("subscriber %s wants %s (%s)", identity.hex()[:8], want.stream,
                     want.codec if want.codec == "raw" else f"jpeg q{want.quality}")
        if sub.want.token == want.token and want.after < sub.want.after:
            # A second credit sent before the first was answered: never send a frame twice.
            want = replace(want, after=sub.want.after)
        sub.want, sub.last_seen = want, time.monotonic()
        sub.credit = min(MAX_CREDIT, sub.credit + 1)
        feed = self._feed(want.stream)
        self._serve(sub, feed)
        self._update_demand(feed)

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
        if sub.want.token == d.token and d.seq <= sub.want.after:
            return  # it has this one: the next frame will come with a notice
        try:
            payload = newest.payload(sub.want.setting)
        except ValueError as exc:
            log.error("%s: %s", d.stream, exc)
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

    def _feed(self, stream: str) -> _Feed:
        feed = self._feeds.get(stream)
        if feed is None or not feed.is_alive():
            feed = self._feeds[stream] = _Feed(stream, self.broker, self._context)
            feed.start()
        feed.idle_since = None
        return feed

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
    socket.setsockopt(zmq.MAXMSGSIZE, wire.MAX_REQUEST * 2)


class _Registration(threading.Thread):
    """Tells the broker, every heartbeat, that this host's streams are served here."""

    def __init__(self, relay: Relay) -> None:
        super().__init__(name="framebus-relay-registration", daemon=True)
        self._relay = relay
        self._stopping = threading.Event()

    def run(self) -> None:
        reachable = True
        with BrokerClient(self._relay.broker, timeout=0.5) as client:
            while True:
                try:
                    client.request("relay", host=config.host_id(), endpoint=self._relay.endpoint,
                                   pid=os.getpid())
                    if not reachable:
                        log.info("broker %s reachable again", client.address)
                    reachable = True
                except FramebusError as exc:
                    if reachable:
                        log.warning("broker %s: %s; retrying", client.address, exc)
                    reachable = False
                if self._stopping.wait(config.HEARTBEAT_INTERVAL):
                    return

    def stop(self) -> None:
        self._stopping.set()
        self.join(2)
