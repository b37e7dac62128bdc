"""A relay's registration: where the relay is, told to the broker every heartbeat, and the
list of this host's streams kept fresh for the relay's loop."""

from __future__ import annotations

import logging
import os
import time

import zmq

from .. import config
from ..discovery import BrokerClient
from ..errors import BrokerFull
from ..support.heartbeat import Heartbeat
from ..support.throttle import Throttle
from .feed import NOTIFY

log = logging.getLogger("framebus.remote.relay")

#: A want for a stream the relay has not heard of makes it ask the broker for this host's
#: streams at once, but no more often than this (it asks every heartbeat anyway).
REFRESH_EVERY = 0.05
#: A full broker is logged at most once in this many seconds.
REFUSALS_LOGGED = 10.0


class Registration(Heartbeat):
    """Tells the broker, every heartbeat, that this host's streams are served here; and
    keeps the relay's list of them, which the broker gives: every heartbeat, and at once
    (at most every REFRESH_EVERY) when a subscriber wants a stream the list lacks.

    The relay's loop reads ``known``, ``started`` and ``done``; a notice ("") on the
    feeds' socket tells it a refresh is done.
    """

    min_gap = REFRESH_EVERY

    def __init__(self, broker: str, endpoint: str, context: zmq.Context) -> None:
        super().__init__(BrokerClient(broker, context=context, timeout=0.5), "relay")
        self._endpoint, self._context = endpoint, context
        self._notify: zmq.Socket | None = None
        self._next_beat = 0.0
        #: Names of the streams the broker knows on this host, as of the last refresh.
        self.known: frozenset[str] = frozenset()
        #: ... and of the packet streams (a decoder's; a Publisher's stream has none).
        self.known_packets: frozenset[str] = frozenset()
        self.started = 0  # refreshes begun
        self.done = 0  # the number of the last refresh finished, whether the broker answered
        self._full = Throttle(log, REFUSALS_LOGGED)  # the broker has no room for the relay

    def refresh_soon(self) -> None:
        self.wake()

    def setup(self) -> None:
        self._notify = self._context.socket(zmq.PUSH)
        self._notify.linger = 0
        self._notify.connect(NOTIFY)
        self.beat_once()  # at once: remote subscribers may be waiting for this host's list

    def teardown(self) -> None:
        if self._notify is not None:
            self._notify.close()

    def beat(self) -> None:
        """Say where the relay is (each heartbeat), then refresh the list of streams."""
        self.started += 1
        number = self.started
        try:
            if time.monotonic() >= self._next_beat:
                try:  # a full broker is logged as refusals are, and the list refreshed anyway
                    self.client.request("relay", host=config.host_id(),
                                        endpoint=self._endpoint, pid=os.getpid())
                except BrokerFull as exc:
                    self._full.warning("relay: %s; retrying every beat", exc)
                self._next_beat = time.monotonic() + config.HEARTBEAT_INTERVAL
            host = config.host_id()
            streams = self.client.streams(host=host, kind="all")
            self.known = frozenset(s.name for s in streams if s.kind == "frames")
            self.known_packets = frozenset(s.name for s in streams if s.kind == "packets")
        finally:  # answered or not, the subscribers waiting for this refresh hear of it
            self.done = number
            self._tell_the_loop()

    def _tell_the_loop(self) -> None:
        assert self._notify is not None
        try:
            self._notify.send_string("", zmq.NOBLOCK)
        except zmq.Again:
            pass  # the loop has notices to read: it will see this refresh then
