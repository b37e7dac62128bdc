"""The thread that keeps the broker told, for a producer and for a relay.

Both must tell the broker again and again that they are alive, never block their own work
on it, and log the broker's going away once and its coming back once, however long it is
away. What each says in its beat is theirs; the rhythm, the waking and the logging are here.
"""

from __future__ import annotations

import logging
import threading

from .. import config
from ..discovery import BrokerClient
from ..errors import BrokerUnavailable, FramebusError

log = logging.getLogger("framebus.heartbeat")


class Heartbeat(threading.Thread):
    """Calls ``beat()`` every ``interval`` seconds, and soon after ``wake()``, until ``stop()``.

    ``beat()`` talks to the broker through ``self.client``, which only this thread uses once
    it runs. A BrokerUnavailable is logged when the broker stops answering and again when it
    answers; any other FramebusError is logged as an error; neither ends the thread.
    """

    interval: float = config.HEARTBEAT_INTERVAL
    #: Beats come at least this far apart, however often the thread is woken (seconds).
    min_gap: float = 0.0

    def __init__(self, client: BrokerClient, who: str) -> None:
        super().__init__(name=f"framebus-heartbeat-{who}", daemon=True)
        self.client = client
        self.who = who
        #: Whether the broker answered the last beat.
        self.reachable = True
        self._stopping = threading.Event()
        self._wake = threading.Event()
        self._finished = False

    # -- what a subclass says ----------------------------------------------------

    def beat(self) -> None:
        """Tell the broker; raise what BrokerClient raises."""
        raise NotImplementedError

    def setup(self) -> None:
        """In the thread, before its first beat (sockets of the thread's own, say)."""

    def teardown(self) -> None:
        """In the thread, after its last beat."""

    def finish(self) -> None:
        """After the thread has stopped, before the broker client is closed (a goodbye)."""

    # -- the rhythm --------------------------------------------------------------

    def beat_once(self) -> bool:
        """One beat, its failure logged as it deserves; returns whether the broker answered."""
        try:
            self.beat()
        except BrokerUnavailable:
            if self.reachable:
                log.warning("%s: broker %s stopped answering; retrying", self.who,
                            self.client.address)
            self.reachable = False
            return False
        except FramebusError as exc:
            log.error("%s: broker %s refused: %s", self.who, self.client.address, exc)
            return False
        if not self.reachable:
            log.info("%s: broker %s reachable again", self.who, self.client.address)
        self.reachable = True
        return True

    def wake(self) -> None:
        """Beat soon, without waiting out the interval."""
        self._wake.set()

    def run(self) -> None:
        self.setup()
        try:
            while True:
                self._wake.wait(self.interval)
                self._wake.clear()  # a wake before this is covered by the beat that follows
                if self._stopping.is_set():
                    return
                self.beat_once()
                if self.min_gap and self._stopping.wait(self.min_gap):
                    return
        finally:
            self.teardown()

    def stop(self, timeout: float = 2.0) -> None:
        """Stop beating, say goodbye (``finish``) and close the broker client. Idempotent."""
        self._stopping.set()
        self._wake.set()
        if self.is_alive():
            self.join(timeout)
        if not self._finished:
            self._finished = True
            self.finish()
            self.client.close()
