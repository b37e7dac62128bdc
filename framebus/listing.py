"""The broker's list of streams, asked for again and again without ever waiting on it.

A MultiSubscriber follows patterns ("lobby-*") by listing the broker's streams every so
often. It must never block its caller for that: a broker that is slow or gone would hold
every stream's frames back. So the listing is a request sent on a DEALER socket of its
own whose reply is taken when it comes; the socket's file descriptor goes into the same
selector (or event loop) as the subscribers', and `poll()` is called when it is readable
or when `due` comes.
"""

from __future__ import annotations

import fnmatch
import itertools
import logging
import re
import time

import zmq

from . import config
from .errors import FramebusError, InvalidName, ProtocolError
from .keys import secure_client
from .names import MAX_NAME_LENGTH, is_valid_stream_name
from .protocol.broker import LIST_PAGE, MAX_STREAMS, ListPage, Refusal, decode_reply, encode
from .protocol.broker import reply_id as reply_id_of
from .support.throttle import Throttle

log = logging.getLogger("framebus.multi")

#: What a pattern may hold: a name's own characters and fnmatch's `*`, `?`, `[`, `]`, `!`.
_PATTERN = re.compile(r"[A-Za-z0-9._*?\[\]!-]+")
_WILDCARDS = frozenset("*?[")
#: A listing whose reply has not come within this long is given up (seconds).
LIST_TIMEOUT = 1.0
#: A listing runs to at most this many pages; a broker that sends more is not believed.
MAX_PAGES = 1 + 4 * MAX_STREAMS // LIST_PAGE
#: The listings take at most this share of the caller's thread: on a site of thousands of
#: streams, decoding them every `every` seconds would cost more than their frames.
LISTING_SHARE = 0.02


def is_pattern(text: str) -> bool:
    """Whether *text* is an fnmatch pattern rather than a stream name."""
    return any(c in _WILDCARDS for c in text)


def validate_pattern(pattern: object) -> str:
    """*pattern* if it is a valid stream-name pattern, else InvalidName saying why."""
    if not isinstance(pattern, str):
        raise InvalidName(f"a stream pattern must be a string, not {type(pattern).__name__}")
    if not 0 < len(pattern) <= 2 * MAX_NAME_LENGTH or not _PATTERN.fullmatch(pattern):
        raise InvalidName(f"invalid stream-name pattern {pattern!r}: use up to "
                          f"{2 * MAX_NAME_LENGTH} letters, digits, '.', '_', '-' and the "
                          "wildcards '*', '?', '[...]'")
    return pattern


class Listing:
    """Names of the streams the broker lists that match *patterns*, asked for every *every*
    seconds. Not thread-safe; the caller calls poll() when `due` comes or fileno() is
    readable."""

    def __init__(self, patterns: list[str], *, broker: str | None, context: zmq.Context,
                 every: float) -> None:
        self.patterns = [validate_pattern(p) for p in patterns]
        self.address = config.broker_address(broker)
        self.every = every
        self._socket = context.socket(zmq.DEALER)
        self._socket.linger = 0
        self._socket.immediate = True  # while the broker is away a send fails, nothing queues
        try:
            secure_client(self._socket, self.address)  # CurveZMQ beyond loopback
            self._socket.connect(self.address)
        except (FramebusError, zmq.ZMQError):
            self._socket.close(linger=0)
            raise
        self._ids = itertools.count(1)
        self._rid: int | None = None  # the request whose reply is awaited
        self._pages = 0
        self._found: list[str] = []  # names matched so far by this listing's pages
        self._spent = 0.0  # CPU seconds this listing's replies took to decode
        self._said = Throttle(log, 30.0)
        #: monotonic time by which poll() must be called next.
        self.due = 0.0

    def fileno(self) -> int:
        """Readable when a reply may have come (ZeroMQ's own, edge-like signal: poll() reads
        every message there is before it returns, so no edge is missed)."""
        return self._socket.getsockopt(zmq.FD)

    def poll(self) -> list[str] | None:
        """The matching names of a listing just completed, or None; sends the next request
        when one is due. Never waits."""
        now = time.monotonic()
        names = self._take_replies()
        if self._rid is not None and now >= self.due:
            self._said.warning("the broker at %s did not list its streams within %.1f s",
                               self.address, LIST_TIMEOUT, key="timeout")
            self._rid = None
            self.due = now + self.every
        if self._rid is None and now >= self.due:
            self._found, self._pages, self._spent = [], 0, 0.0
            self._ask(None)
        names = self._take_replies() if names is None else names  # sending may eat the signal
        return names

    def _ask(self, after: str | None) -> None:
        rid = next(self._ids)
        fields: dict[str, object] = {"op": "list", "id": rid, "limit": LIST_PAGE}
        if after is not None:
            fields["after"] = after
        try:
            self._socket.send_multipart([b"", encode(fields)], zmq.NOBLOCK)
        except zmq.Again:  # no connection to the broker right now: try at the next turn
            self._rid, self.due = None, time.monotonic() + self.every
            return
        self._rid, self._pages = rid, self._pages + 1
        self.due = time.monotonic() + LIST_TIMEOUT

    def _take_replies(self) -> list[str] | None:
        """Read every message waiting; the names once the last page of a listing came."""
        done: list[str] | None = None
        started = time.thread_time()
        while self._socket.getsockopt(zmq.EVENTS) & zmq.POLLIN:
            frames = self._socket.recv_multipart(zmq.NOBLOCK)
            if len(frames) != 2 or frames[0] != b"" or self._rid is None:
                continue
            if reply_id_of(frames[1]) != self._rid:
                continue  # a late reply to a request given up on
            try:
                done = self._on_page(decode_reply(frames[1], ListPage))
            except ProtocolError as exc:
                self._said.warning("a listing from the broker at %s refused: %s", self.address,
                                   exc, key="malformed")
                self._rid, self.due = None, time.monotonic() + self.every
        self._spent += time.thread_time() - started
        if done is not None:  # the next listing waits long enough to keep within its share
            self.due = time.monotonic() + max(self.every, self._spent / LISTING_SHARE)
        return done

    def _on_page(self, page: ListPage | Refusal) -> list[str] | None:
        if isinstance(page, Refusal):
            self._said.warning("the broker at %s refused to list its streams: %s",
                               self.address, page.error, key=page.code)
            self._rid, self.due = None, time.monotonic() + self.every
            return None
        self._found += [s.name for s in page.streams if self._wanted(s)]
        if page.next is not None and self._pages < MAX_PAGES:
            self._ask(page.next)
            return None
        self._rid, self.due = None, time.monotonic() + self.every
        return self._found

    def _wanted(self, info: object) -> bool:
        # Packet streams share their pixel stream's name; only frames are for a Subscriber.
        if getattr(info, "kind", "frames") != "frames":
            return False
        name = getattr(info, "name", None)
        return is_valid_stream_name(name) and any(
            fnmatch.fnmatchcase(str(name), p) for p in self.patterns)

    def close(self) -> None:
        self._socket.close(linger=0)
