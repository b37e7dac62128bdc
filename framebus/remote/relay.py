"""The relay: serves this host's streams to subscribers on other hosts.

It reads each wanted stream from shared memory like any local subscriber (so the
decoder's frame path never knows it is there), and answers credits over ZeroMQ TCP:
raw frames straight from their ring slot, each confirmed whole after it was sent
(framebus/remote/sending.py). Flow control is per subscriber
and latest-frame: a subscriber gets one frame per credit, the newest one it does
not have, so a slow or distant subscriber never builds a queue and never slows
anyone else. Payloads are made at most once per frame and setting (raw, or JPEG
at a quality) however many subscribers share it.

Endpoints on loopback are served as they are; endpoints beyond loopback only with
CurveZMQ and an allowlist of client keys (framebus/keys.py).
"""

from __future__ import annotations

import logging
import threading
import time

import zmq
from msgspec.structs import replace

from .. import config
from ..errors import FramebusError, FrameOverwritten, ProtocolError
from ..keys import bind_servers, is_local
from ..protocol import relay as wire
from ..support.throttle import Throttle
from . import packet_feed
from .client import Client
from .feed import NOTIFY, Feed
from .feeds import FeedPool
from .packet_limits import DEFAULT_LIMITS, BufferLimits
from .packet_service import PacketService
from .registration import Registration
from .sending import SlotSends, check_message

log = logging.getLogger(__name__)

DEFAULT_BIND = "tcp://127.0.0.1:5556"
#: Credits a subscriber may hold at once: more are ignored, so a subscriber that
#: fires requests without reading gets no more frames in flight than this.
MAX_CREDIT = 2
#: ZeroMQ I/O threads of a relay's own context: the kernel's copies of frames into several
#: subscribers' sockets run side by side (about +20% per subscriber with 3 of them at 1080p).
IO_THREADS = 2
CLIENT_IDLE = 30.0  # forget a subscriber silent this long
FEED_IDLE = 10.0  # stop reading a stream nobody has wanted for this long
ACTIVE = 2.0  # a subscriber that asked within this long is likely to ask again
#: The most streams read at once and subscribers known at once: all that a flood of
#: well-formed requests can make the relay hold. Beyond them a newcomer is refused, "full".
MAX_FEEDS = 64
MAX_SUBSCRIBERS = 1024
#: Requests over this size make ZeroMQ drop the sender's connection (ZMQ_MAXMSGSIZE).
MAX_MESSAGE = wire.MAX_REQUEST * 2
#: Refusals are logged at most once in this many seconds per code, with how many went unsaid.
REFUSALS_LOGGED = 10.0


class Relay:
    """Serves this host's streams to remote subscribers; ``run()`` serves until ``stop`` is set."""

    def __init__(self, binds: list[str] | None = None, *, broker: str | None = None,
                 keys_dir: str | None = None, advertise: str | None = None,
                 context: zmq.Context | None = None,
                 packet_buffer: BufferLimits = DEFAULT_LIMITS) -> None:
        self.binds = binds or [DEFAULT_BIND]
        self.broker = config.broker_address(broker)
        #: pyzmq's own rule: a context given is the caller's to end, one made here is ours.
        self._own_context = context is None
        self._context = zmq.Context(IO_THREADS) if context is None else context
        self._sockets: list[zmq.Socket] = []
        self._keys = self._notify = None
        self._feeds = FeedPool(lambda stream: Feed(stream, self.broker, self._context),
                               most=MAX_FEEDS, idle=FEED_IDLE)
        self._subscribers: dict[tuple[int, bytes], Client] = {}
        self.sent = self.rejected = self.torn = 0
        self._slot_sends = SlotSends()
        self._packets = PacketService(self.broker, self._context, packet_buffer)
        self._refusals = Throttle(log, REFUSALS_LOGGED)
        try:
            self._sockets, self._keys = bind_servers(self._context, self.binds, keys_dir,
                                                     "relay", _prepare)
            self.endpoint = advertise or self._advertised()
            self._notify = self._context.socket(zmq.PULL)
            self._notify.bind(NOTIFY)
        except BaseException:
            self.close()
            raise
        self._registration = Registration(self.broker, self.endpoint, self._context)

    def _advertised(self) -> str:
        """The endpoint other hosts are told: the first one beyond loopback, if any."""
        for socket in reversed(self._sockets):
            endpoint = socket.getsockopt_string(zmq.LAST_ENDPOINT)
            if not is_local(endpoint):
                if "://0.0.0.0:" in endpoint or "://*:" in endpoint:
                    raise FramebusError(f"bound to {endpoint}, the relay cannot tell other "
                                        "hosts its address: pass --advertise tcp://ADDRESS:PORT")
                return endpoint
        return self._sockets[0].getsockopt_string(zmq.LAST_ENDPOINT)

    # -- the loop ----------------------------------------------------------------

    def run(self, stop: threading.Event | None = None) -> None:
        stop = stop or threading.Event()
        registration = self._registration
        registration.start()
        poller = zmq.Poller()
        for socket in self._sockets:
            poller.register(socket, zmq.POLLIN)
        poller.register(self._notify, zmq.POLLIN)
        poller.register(self._slot_sends.fileno(), zmq.POLLIN)
        log.info("relay serving %s on %s (advertised as %s), broker %s", config.host_id(),
                 ", ".join(self.binds), self.endpoint, self.broker)
        next_sweep = 0.0
        try:
            while not stop.is_set():
                for socket, _ in poller.poll(100):
                    if isinstance(socket, int):
                        self._on_sent()
                    elif socket is not self._notify:
                        self._on_request(socket)
                    elif (stream := socket.recv_string()).endswith(packet_feed.SUFFIX):
                        self._packets.on_new_packets(stream.removesuffix(packet_feed.SUFFIX))
                    elif stream:
                        self._on_new_frame(stream)
                    else:  # "": the registration thread has a fresh list of streams
                        self._on_streams()
                now = time.monotonic()
                if now >= next_sweep:
                    self._sweep(now)
                    self._packets.sweep(now)
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
            self._packets.forget(key)
            return
        if isinstance(want, wire.PacketsWant):
            known = self._registration.known_packets
            if (refusal := self._packets.on_request(socket, key, want, known)) is not None:
                if refusal[0] == "not_found":
                    self._registration.refresh_soon()  # the next request may find it
                self._refuse(socket, identity, *refusal)
            return
        sub = self._subscribers.get(key)
        if sub is None:
            if not self._room_for_a_subscriber():
                self._refuse(socket, identity, "full", f"the relay serves {MAX_SUBSCRIBERS} "
                                                       "subscribers already, all active")
                return
            sub = self._subscribers[key] = Client(socket, identity, want)
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

    def _start_serving(self, key: tuple[int, bytes], sub: Client) -> None:
        feed = self._feeds.want(sub.want.stream, self._wanted())
        if feed is None:
            del self._subscribers[key]
            self._refuse(sub.socket, sub.identity, "full",
                         f"the relay reads {MAX_FEEDS} streams already, all wanted: "
                         f"{sub.want.stream!r} cannot be one more")
            return
        self._serve(sub, feed)
        self._update_demand(feed)

    def _on_streams(self) -> None:
        """The list of this host's streams is fresh: serve, in order, who waited for one in it."""
        registration = self._registration
        for key, sub in list(self._subscribers.items()):
            if sub.pending is None:
                continue
            if sub.want.stream in registration.known:  # in any list: no need to wait for more
                sub.pending = None
                self._start_serving(key, sub)
            elif registration.done > sub.pending:  # lacking from a list asked for after the want
                del self._subscribers[key]
                why = "" if registration.reachable else \
                    f" (the broker at {self.broker} does not answer)"
                self._refuse(sub.socket, sub.identity, "not_found", f"no stream named "
                             f"{sub.want.stream!r} on host {config.host_id()}{why}")

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
        if not self._refusals.warning("refused a request (%s): %s", code, message, key=code):
            log.debug("refused a request (%s): %s", code, message)
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

    def _update_demand(self, feed: Feed) -> None:
        """Tell the feed which settings its active subscribers want, and whether one waits."""
        now = time.monotonic()
        mine = [sub for sub in self._subscribers.values() if sub.want.stream == feed.stream]
        feed.settings = frozenset(sub.want.setting for sub in mine
                                  if sub.credit or now - sub.last_seen < ACTIVE)
        if any(sub.credit for sub in mine):
            feed.waiting.set()
        else:
            feed.waiting.clear()

    def _serve(self, sub: Client, feed: Feed) -> None:
        """Send *sub* the stream's newest frame if it has a credit and not that frame yet."""
        newest = feed.fresh
        if newest is None or not sub.credit or sub.unconfirmed is not None:
            return  # the next frame, or the check of the last one, comes with a notice
        d = newest.descriptor
        for token, seq in ((sub.want.token, sub.want.after), sub.sent or (None, -1)):
            if token == d.token and d.seq <= seq:
                return  # it has this one: the next frame will come with a notice
        try:
            sent = sub.send(newest, self._slot_sends, self._key(sub))
        except ValueError as exc:
            # Refused, not kept waiting: each new frame would fail again, and say so again.
            self._subscribers.pop(self._key(sub), None)
            self._refuse(sub.socket, sub.identity, "unsupported", f"{d.stream}: {exc}")
            return
        except FrameOverwritten:
            return  # lapped before it went: the next frame comes with a notice
        except zmq.Again:
            return  # its connection is full: it gets the newest when it drains
        if sent:
            self.sent += 1
            sub.credit -= 1
            sub.want = replace(sub.want, token=d.token, after=d.seq)
            sub.sent = (d.token, d.seq)

    def _on_sent(self) -> None:
        """Frames sent from their slots are out of ZeroMQ's hands: check and confirm them."""
        for ticket in self._slot_sends.finished():
            sub = self._subscribers.get(ticket.key)
            if sub is None or sub.unconfirmed is not ticket:
                continue  # gone, or a send that failed
            whole = ticket.whole()
            try:
                sub.socket.send_multipart(check_message(sub.identity, whole), zmq.NOBLOCK)
            except zmq.ZMQError:
                pass  # its connection is full or gone: it asks again after a second
            self.torn += not whole
            sub.checked(whole, MAX_CREDIT)
            feed = self._feeds.get(sub.want.stream)
            if feed is not None:
                self._serve(sub, feed)
                self._update_demand(feed)

    def _key(self, sub: Client) -> tuple[int, bytes]:
        return (self._sockets.index(sub.socket), sub.identity)

    def _wanted(self) -> set[str]:
        return {sub.want.stream for sub in self._subscribers.values()}

    def _sweep(self, now: float) -> None:
        for key, sub in list(self._subscribers.items()):
            if now - sub.last_seen > CLIENT_IDLE:
                del self._subscribers[key]
        for feed in self._feeds:
            self._update_demand(feed)  # subscribers that went quiet stop costing copies
        self._feeds.sweep(self._wanted(), now)

    def reload_keys(self) -> None:
        """Re-read the authorized client keys (SIGHUP): they apply to new connections."""
        if self._keys is not None:
            self._keys.reload()

    def close(self) -> None:
        self._feeds.close()
        self._packets.close()
        for socket in self._sockets:
            socket.close(linger=0)
        if self._notify is not None:
            self._notify.close(linger=0)
        if self._keys is not None:
            self._keys.stop()
        if self._own_context:
            self._context.term()
        self._slot_sends.close()
        log.info("relay stopped: %d frames sent (%d reused while sent from their slot, sent "
                 "again), %d packets, %d requests refused", self.sent, self.torn,
                 self._packets.sent, self.rejected)


def _prepare(socket: zmq.Socket) -> None:
    socket.sndhwm = 4 * MAX_CREDIT  # a frame per credit is all a subscriber can have queued
    socket.setsockopt(zmq.MAXMSGSIZE, MAX_MESSAGE)
