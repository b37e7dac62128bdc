"""`framebus up`: a whole site from one file, kept running.

The supervisor starts the broker (unless one already answers at the site's address),
the relay and the console (`framebus web`) if the site has them, and one
`framebus decode` process per stream. A child
that dies is restarted, at once if it had run a while, with growing delays if it keeps
dying, and the log says why it died (its exit status and its last words). SIGHUP
re-reads the site file and starts, stops or restarts only the streams and the relay
that changed; a changed broker takes a restart of `framebus up`, since every child
depends on it. SIGINT and SIGTERM stop the streams, then the relay and the console,
then the broker,
and reclaim whatever ring a killed child left behind.

Children run in their own process groups, so a Ctrl-C in the terminal reaches the
supervisor alone and the children are stopped in order; should the supervisor itself
be killed, the kernel sends them SIGTERM (PR_SET_PDEATHSIG). Both are
``framebus.support.children``'s: ``spawn``, ``stop`` and ``die_with_parent``.
"""

from __future__ import annotations

import collections
import logging
import re
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from . import sitefile
from .discovery import broker_answers
from .errors import SiteError
from .leftovers import clean_after, reclaim_stale
from .spec import DecodeSpec
from .support import children
from .support.backoff import Backoff

__all__ = ["Child", "Supervisor"]

log = logging.getLogger(__name__)

#: A child that ran this long before dying is restarted at once; one that dies sooner
#: waits RESTART_FIRST, doubling each time, up to RESTART_CAP.
STABLE_AFTER = 10.0
RESTART_FIRST = 0.5
RESTART_CAP = 30.0
STOP_TIMEOUT = 5.0
_LOG_TIME = re.compile(r"^\d\d:\d\d:\d\d ")


class Child:
    """One supervised process: how to start it, and its restart bookkeeping."""

    def __init__(self, name: str, args: list[str]) -> None:
        self.name = name
        self.args = args
        self.proc: subprocess.Popen | None = None
        self.started = 0.0
        self.due = 0.0  # when to (re)start, monotonic
        self.backoff = Backoff(RESTART_FIRST, RESTART_CAP, stable_after=STABLE_AFTER)
        self.restarts = 0
        self.last_words: collections.deque[str] = collections.deque(maxlen=3)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> None:
        self.last_words.clear()
        self.proc = children.spawn(
            self.args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE, text=True, errors="replace")
        self.started = time.monotonic()
        threading.Thread(target=self._relay, args=(self.proc.stderr,), daemon=True,
                         name=f"framebus-up-{self.name}").start()
        log.info("%s: started (pid %d)", self.name, self.proc.pid)

    def _relay(self, stream) -> None:
        """Its log lines go to ours, and the last few are kept as the reason it died."""
        for line in stream:
            line = _LOG_TIME.sub("", line.rstrip(), count=1)  # ours says when
            if line:
                self.last_words.append(line)
                log.info("[%s] %s", self.name, line)
        stream.close()

    def died(self) -> int | None:
        """The exit status if the process has ended since the last look, else None."""
        if self.proc is None or self.proc.poll() is None:
            return None
        status, self.proc = self.proc.returncode, None
        return status

    def schedule_restart(self, now: float) -> float:
        """Set when to start again; returns the delay."""
        delay = 0.0 if self.backoff.stable(now - self.started) else self.backoff.next()
        self.due = now + delay
        self.restarts += 1
        return delay

    def status(self, now: float) -> str:
        """For a display: its pid, or when it starts again, and how often it was restarted."""
        proc = self.proc
        state = f"pid {proc.pid}" if proc is not None and proc.poll() is None else \
            f"starting in {max(0.0, self.due - now):.1f} s"
        return state + (f", restarted {self.restarts}x" if self.restarts else "")

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """SIGTERM its process group, SIGKILL after *timeout*, and reap it."""
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        if children.stop(proc, timeout) == -signal.SIGKILL:
            log.warning("%s: did not stop within %.0f s; killed it", self.name, timeout)
        log.info("%s: stopped", self.name)


class Supervisor:
    """Runs a site file until stopped. ``run()`` blocks; call it from the main thread."""

    def __init__(self, path: str | Path,
                 on_tick: Callable[[Supervisor], None] | None = None) -> None:
        self.path = Path(path)
        self.site = sitefile.load(self.path)
        self.broker: Child | None = None  # None: a broker up did not start serves the site
        self.relay: Child | None = None
        self.web: Child | None = None
        self.streams: dict[str, Child] = {}
        self._reload = threading.Event()
        self._on_tick = on_tick

    def run(self) -> None:
        previous = signal.signal(signal.SIGHUP, lambda *_: self._reload.set())
        try:
            left = reclaim_stale()
            if left:
                log.info("reclaimed what killed producers left of %s", ", ".join(left))
            self._start_broker()
            self._set_relay(self.site.relay)
            self._set_web(self.site.web)
            for spec in self.site.streams.values():
                self._add(spec)
            while True:
                self._tick(time.monotonic())
                time.sleep(0.1)
        finally:
            signal.signal(signal.SIGHUP, previous)
            self.stop()

    def stop(self) -> None:
        """Stop every stream, then the relay, then the broker; reclaim rings that killed
        children left."""
        for name in list(self.streams):
            self._remove(name)
        self._set_relay(None)
        self._set_web(None)
        if self.broker is not None:
            self.broker.stop()
            self.broker = None

    # -- the loop ----------------------------------------------------------------

    def _tick(self, now: float) -> None:
        if self._reload.is_set():
            self._reload.clear()
            self.reload()
        for child in self._children():
            status = child.died()
            if status is not None:
                self._after_death(child, status, now)
            if child.proc is None and now >= child.due:
                child.start()
        if self._on_tick:
            self._on_tick(self)

    def _after_death(self, child: Child, status: int, now: float) -> None:
        why = f"exit status {status}" if status >= 0 else f"killed by {_signal_name(-status)}"
        words = f": {child.last_words[-1]}" if child.last_words else ""
        delay = child.schedule_restart(now)
        log.warning("%s: died (%s)%s; restarting %s", child.name, why, words,
                    "now" if not delay else f"in {delay:.1f} s")
        if self.streams.get(child.name) is child:  # a decoder: its ring may be left
            clean_after(child.name)

    def _children(self) -> list[Child]:
        services = [child for child in (self.broker, self.relay, self.web)
                    if child is not None]
        return services + list(self.streams.values())

    # -- the site ------------------------------------------------------------------

    def _start_broker(self) -> None:
        spec = self.site.broker
        address = spec.address
        if broker_answers(address):
            log.info("using the broker already running at %s", address)
            if spec.bind or spec.curve_keys:
                log.warning("[broker] bind and curve_keys apply to a broker up starts; the "
                            "one at %s serves what it was started with", address)
            return
        self.broker = Child("broker", spec.broker_args())
        self.broker.start()
        deadline = time.monotonic() + 10
        while not broker_answers(address):
            if not self.broker.running or time.monotonic() > deadline:
                raise SiteError(f"the broker did not start at {address}: "
                                         f"{' '.join(self.broker.last_words) or 'no reason given'}")
            time.sleep(0.1)

    def _set_relay(self, spec: sitefile.RelaySpec | None) -> None:
        """Stop the running relay, if any, and set up the one *spec* says (started by the
        next tick, like the streams)."""
        if self.relay is not None:
            self.relay.stop()
        self.relay = None if spec is None else \
            Child("relay", spec.relay_args(self.site.broker.address))

    def _set_web(self, spec: sitefile.WebSpec | None) -> None:
        """Likewise for the console."""
        if self.web is not None:
            self.web.stop()
        self.web = None if spec is None else \
            Child("web", spec.web_args(self.site.broker.address))

    def _add(self, spec: DecodeSpec) -> None:
        self.streams[spec.name] = Child(spec.name, [*spec.args(),
                                                    "--broker", self.site.broker.address])

    def _remove(self, name: str) -> None:
        self.streams.pop(name).stop()
        clean_after(name)

    def reload(self) -> None:
        """Re-read the site file; apply what changed, keep everything else running."""
        try:
            site = sitefile.load(self.path)
        except SiteError as exc:
            log.error("reload refused, the running site stays as it was: %s", exc)
            return
        if site.broker != self.site.broker:
            # Every child was started with the broker's address, and the broker may be
            # one up did not start: replacing it under them is not a reload's to do.
            log.warning("reload: a changed broker takes a restart of `framebus up`; "
                        "keeping the running one at %s", self.site.broker.address)
            site = replace(site, broker=self.site.broker)
        if site.relay != self.site.relay:
            log.info("reload: relay %s", "added" if self.site.relay is None else
                     "removed" if site.relay is None else "changed; restarting it")
            self._set_relay(site.relay)
        if site.web != self.site.web:
            log.info("reload: web %s", "added" if self.site.web is None else
                     "removed" if site.web is None else "changed; restarting it")
            self._set_web(site.web)
        old, new = self.site.streams, site.streams
        for name in old.keys() - new.keys():
            log.info("reload: %s removed", name)
            self._remove(name)
        for name, spec in new.items():
            if name in old and old[name] == spec:
                continue
            if name in old:
                log.info("reload: %s changed; restarting it", name)
                self._remove(name)
            else:
                log.info("reload: %s added", name)
            self._add(spec)
        self.site = site


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"
