"""A producer's registration with the broker: the thread that keeps one stream known.

A pixel stream's Publisher and a packet stream's PacketPublisher register in the same way:
register at once (so that a name clash fails the constructor), heartbeat with figures,
register again after the broker restarts or the ring changes, wait out a full broker, say
goodbye at the end. What each registers and reports is its own (``describe``, ``report``,
``token``); the rest is here, once.
"""

from __future__ import annotations

import logging
import secrets
from typing import Any

from ..discovery import BrokerClient
from ..errors import BrokerFull, BrokerUnavailable, FramebusError, StreamNotFound
from .heartbeat import Heartbeat

log = logging.getLogger("framebus.publisher")


class StreamRegistration(Heartbeat):
    """Keeps the broker told of stream *name* of kind *kind* ("frames" or "packets").

    A broker that is full (as many live streams as its cap) is retried every beat, as one
    that does not answer is: the stream is published meanwhile, and found once there is room.
    """

    def __init__(self, client: BrokerClient, name: str, kind: str = "frames",
                 publishing: str = "publishing") -> None:
        super().__init__(client, name if kind == "frames" else f"{name}/{kind}")
        self.name = name
        #: A frame stream's messages carry no kind: what a broker of old understands.
        self._kind: dict[str, Any] = {} if kind == "frames" else {"kind": kind}
        self._publishing = publishing
        #: Only this producer and the broker know it (framebus/trust.py): the same for every
        #: ring generation, so a new one replaces the old while a rival cannot.
        self._secret = secrets.token_bytes(16)
        self._registered = False
        self._full = False  # the broker said it has no room, and we said so

    # -- what a producer says ----------------------------------------------------------------

    def token(self) -> bytes:
        """The current ring's token."""
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        """The register request's fields about the ring (host, pid, segment, shape, ...)."""
        raise NotImplementedError

    def report(self) -> dict[str, Any]:
        """The heartbeat's fields (subscribers, figures, frames, fps, age)."""
        raise NotImplementedError

    # -- the protocol ------------------------------------------------------------------------

    def first_attempt(self) -> None:
        """Register now, so a name clash fails the constructor; a missing or full broker
        does not."""
        try:
            self._register()
        except BrokerUnavailable:
            self.reachable = False
            log.warning("%s: broker %s not reachable; %s anyway and retrying", self.who,
                        self.client.address, self._publishing)

    def changed(self) -> None:
        """The ring was replaced: register it at the next beat."""
        self._registered = False
        self.wake()

    def beat(self) -> None:
        if not self._registered:
            self._register()
            return
        try:
            self.client.request("heartbeat", name=self.name, **self._kind, token=self.token(),
                                secret=self._secret, **self.report())
        except StreamNotFound:
            log.info("%s: broker forgot this stream (restarted?); registering again", self.who)
            self._register()

    def finish(self) -> None:
        if self._registered:
            try:
                self.client.request("unregister", timeout=0.2, name=self.name, **self._kind,
                                    token=self.token(), secret=self._secret)
            except FramebusError:
                pass

    def _register(self) -> None:
        """Register the ring; a full broker is said once, and tried again at the next beat."""
        try:
            self.client.request("register", name=self.name, **self._kind, token=self.token(),
                                secret=self._secret, **self.describe())
        except BrokerFull as exc:
            if not self._full:
                log.warning("%s: the broker at %s is full: %s. Publishing anyway, and "
                            "registering again every %.1f s: subscribers find the stream once "
                            "there is room (a stream dies, or the broker's cap is raised)",
                            self.who, self.client.address, exc, self.interval)
            self._full = True
            return
        if self._full:
            log.info("%s: registered with the broker at %s, which has room again", self.who,
                     self.client.address)
        self._full = False
        self._registered = True
