"""The broker benchmark's load (multiprocessing children, spawned): simulated producers that
register and heartbeat, and subscribers that look streams up.

A producer process drives many simulated producers, one DEALER socket each, as real
producers each have their own BrokerClient connection; they speak the real protocol
(framebus/protocol/broker.py) and carry no frames. It registers them all at once, and each
heartbeats from its registration's reply on, every interval, as a Publisher's heartbeat
thread does: on a fixed schedule, kept in a heap of due times, with epoll over the
sockets for their replies. Like a real producer, a stream never
has two heartbeats in flight: one due while the last is unanswered goes out when the reply
comes, or when the last is given up after BrokerClient's 1 s timeout.

A subscriber process is a real BrokerClient looking up random registered streams at a paced
rate. Both log every request's send and reply times (time.monotonic(), one clock for every
process of the host); the main process does the arithmetic.

They talk to the main process through one queue of (kind, role, payload) messages, and are
steered through shared values that they read without locks (a Control).
"""

from __future__ import annotations

import hashlib
import heapq
import os
import random
import resource
import selectors
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass

import msgspec
import numpy as np
import zmq

from bench.remote.children import exit_on_sigterm
from framebus import config
from framebus.discovery import BrokerClient
from framebus.errors import BrokerUnavailable, StreamNotFound
from framebus.protocol.broker import encode
from framebus.support.children import die_with_parent

#: A real producer's BrokerClient gives a request up after this long (its default timeout).
GIVE_UP = 1.0
#: How often a producer process looks at its Control and gives up on late replies (s).
CHECK_EVERY = 0.05
#: A lookup's alive column when the broker knew no such stream.
NOT_FOUND = -1
#: How long the registrations of one process may take, all of them.
REGISTER_TIMEOUT = 20.0


@dataclass(frozen=True)
class Stream:
    """One simulated producer: its stream, the host it claims and the pid it claims there."""

    name: str
    host: str
    pid: int

    @property
    def token(self) -> bytes:
        return hashlib.blake2b(self.name.encode(), digest_size=16).digest()

    @property
    def secret(self) -> bytes:
        return hashlib.blake2b(self.name.encode(), digest_size=16, person=b"secret").digest()

    def registration(self) -> dict:
        """What a Publisher of a 1080p bgr24 stream registers, from another host."""
        return {"op": "register", "name": self.name, "host": self.host, "pid": self.pid,
                "segment": f"/fbsim.{self.name}", "endpoint": f"ipc:///run/sim/{self.name}.sock",
                "token": self.token, "secret": self.secret, "generation": 1,
                "shape": [1080, 1920, 3], "dtype": "|u1", "fmt": "bgr24", "slots": 8}


class Control:
    """What the main process tells its children, in shared memory read without locks.

    interval: the heartbeats' (seconds), 0 for HEARTBEAT_INTERVAL; kill_at: 0, then the
    monotonic time at which producer process k stops the heartbeats of its first kills[k]
    streams; finish: 1 when every child reports and ends.
    """

    def __init__(self, mp, producer_procs: int) -> None:
        self.interval = mp.RawValue("d", 0.0)
        self.kill_at = mp.RawValue("d", 0.0)
        self.kills = mp.RawArray("i", producer_procs)
        self.finish = mp.RawValue("d", 0.0)

    def over(self, deadline: float) -> bool:
        return bool(self.finish.value) or time.time() > deadline or os.getppid() == 1


class _Head(msgspec.Struct):
    """A reply as far as the load needs it: the rest is skipped."""

    ok: bool
    id: int | None = None
    code: str | None = None


_HEAD = msgspec.msgpack.Decoder(_Head)
_EVENTS, _POLLIN = int(zmq.EVENTS), int(zmq.POLLIN)  # not pyzmq's enums: they cost


def child_entry(target: Callable, queue, role, *args) -> None:
    """Entry point of every child: SIGTERM unwinds like Ctrl-C; dies with the main process."""
    exit_on_sigterm(0)
    die_with_parent()
    try:
        target(queue, role, *args)
    except (KeyboardInterrupt, SystemExit):
        pass
    except Exception:
        queue.put(("error", role, traceback.format_exc()))


def _more_files() -> None:
    """Two descriptors per socket (its mailbox, its TCP connection): raise the soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


# -- simulated producers -----------------------------------------------------------------------


def producer_process(queue, role: int, address: str, streams: list[Stream], control: Control,
                     deadline: float) -> None:
    _more_files()
    context = zmq.Context()
    context.max_sockets = len(streams) + 64
    try:
        producers = _Producers(context, address, streams)
        producers.run(queue, role, control, deadline)
        queue.put(("result", role, producers.report()))
    finally:
        context.destroy(linger=0)


class _Producers:
    """Many simulated producers, a socket each: they register all at once, and each beats
    from its registration's reply on, as a Publisher's heartbeat thread does. Every heartbeat
    sent is logged."""

    def __init__(self, context: zmq.Context, address: str, streams: list[Stream]) -> None:
        self.streams = streams
        self.tokens = [stream.token for stream in streams]
        self.sockets = [context.socket(zmq.DEALER) for _ in streams]
        for s in self.sockets:
            s.linger = 0
            s.connect(address)
        # epoll over the sockets' ZMQ_FD, which costs what is ready, where zmq_poll costs
        # every socket it is given on every call: under a late broker, a poller over the
        # sockets awaiting replies would slow this load down just when it matters.
        self.selector = selectors.EpollSelector()
        for i, s in enumerate(self.sockets):
            self.selector.register(s.FD, selectors.EVENT_READ, i)
        self.recheck: set[int] = set()  # sockets sent on: ZMQ_FD may not signal what came
        self.registering: set[int] = set()
        self.accepted: list[int] = []  # in the order of the broker's replies
        self.refused: dict[str, int] = {}  # registrations, by code
        self.due: list[tuple[float, int]] = []  # (when, stream): the next heartbeats
        self.sent: list[float] = []  # by heartbeat id
        self.answered: list[float] = []  # nan until answered
        self.who: list[int] = []  # the stream of each heartbeat
        self.beat_refused: dict[str, int] = {}
        self.waiting: dict[int, tuple[int, float]] = {}  # stream: (heartbeat id, sent)
        self.held: set[int] = set()  # streams with a heartbeat due while one is in flight
        self.dead: set[int] = set()
        self.killed: list[int] = []
        self.killed_at = float("nan")

    def _request(self, i: int, payload: bytes) -> None:
        self.sockets[i].send_multipart([b"", payload], zmq.NOBLOCK)
        self.recheck.add(i)

    def beat(self, i: int, now: float) -> None:
        """What a Publisher's heartbeat carries, its figures changing a little every time."""
        hid = len(self.sent)
        self._request(i, encode({"op": "heartbeat", "id": hid, "name": self.streams[i].name,
                                 "token": self.tokens[i], "secret": self.streams[i].secret,
                                 "frames": hid * 15, "fps": 30.0,
                                 "age": 0.01, "subscribers": 1, "figures": {}}))
        self.sent.append(now)
        self.answered.append(float("nan"))
        self.who.append(i)
        self.waiting[i] = (hid, now)

    def run(self, queue, role: int, control: Control, deadline: float) -> None:
        start = time.monotonic()
        for i, stream in enumerate(self.streams):  # ids below zero: registrations
            self._request(i, encode({**stream.registration(), "id": -1 - i}))
            self.registering.add(i)
        reported, stopped, next_check = False, False, 0.0
        while True:
            now = time.monotonic()
            kill_at = control.kill_at.value
            if not stopped and 0 < kill_at <= now:
                self.killed = self.accepted[:control.kills[role]]
                self.dead, stopped, self.killed_at = set(self.killed), True, now
            if now >= next_check:
                if control.over(deadline):
                    return
                self._give_up(now)
                if not reported and (not self.registering or now > start + REGISTER_TIMEOUT):
                    self._report_registrations(queue, role, now - start)
                    reported = True
                next_check = now + CHECK_EVERY
            interval = control.interval.value or config.HEARTBEAT_INTERVAL
            while self.due and self.due[0][0] <= now:
                t, i = heapq.heappop(self.due)
                if i in self.dead:
                    continue
                heapq.heappush(self.due, (t + interval, i))
                if i in self.waiting:
                    self.held.add(i)
                else:
                    self.beat(i, now)
            wake = min(self.due[0][0] if self.due else next_check, next_check)
            if not stopped and kill_at > now:
                wake = min(wake, kill_at)
            self._wait(wake - now, interval)

    def _wait(self, seconds: float, interval: float) -> None:
        """Take the replies that come within *seconds* (epoll rounds up to a millisecond: a
        beat a little late rather than a loop spinning)."""
        while self.recheck:
            self._drain(self.recheck.pop(), interval)
        for key, _ in self.selector.select(max(0.0, seconds)):
            self._drain(key.data, interval)

    def _drain(self, i: int, interval: float) -> None:
        """Every reply socket *i* holds: its FD only says that something may have changed."""
        s = self.sockets[i]
        while not s.closed and s.getsockopt(_EVENTS) & _POLLIN:
            self._receive(i, s.recv_multipart(zmq.NOBLOCK), interval)

    def _receive(self, i: int, frames: list[bytes], interval: float) -> None:
        now = time.monotonic()
        head = _HEAD.decode(frames[-1])
        code = "ok" if head.ok else head.code or "?"
        if i in self.registering and head.id == -1 - i:
            self.registering.discard(i)
            if head.ok:
                self.accepted.append(i)
                heapq.heappush(self.due, (now + interval, i))
            else:
                self.refused[code] = self.refused.get(code, 0) + 1
                self.selector.unregister(self.sockets[i].FD)
                self.sockets[i].close(linger=0)  # refused at construction: it goes away
            return
        if head.id is None or not 0 <= head.id < len(self.sent):
            return
        self.answered[head.id] = now
        if not head.ok:
            self.beat_refused[code] = self.beat_refused.get(code, 0) + 1
        if self.waiting.get(i, (None,))[0] == head.id:
            del self.waiting[i]
            if i in self.held:
                self.held.discard(i)
                if i not in self.dead:
                    self.beat(i, now)

    def _give_up(self, now: float) -> None:
        """A heartbeat unanswered for GIVE_UP: a producer would go on; so does this one."""
        for i, (_, sent) in list(self.waiting.items()):
            if now - sent > GIVE_UP:
                del self.waiting[i]
                if i in self.held:
                    self.held.discard(i)
                    self.beat(i, now)

    def _report_registrations(self, queue, role: int, seconds: float) -> None:
        refused = dict(self.refused)
        if self.registering:
            refused["no reply"] = len(self.registering)
        queue.put(("registered", role, {"accepted": [self.streams[i].name for i in self.accepted],
                                        "refused": refused, "seconds": seconds}))

    def report(self) -> dict:
        killed_last = {self.streams[i].name: float("nan") for i in self.killed}
        killed = set(self.killed)
        for hid, i in enumerate(self.who):
            if i in killed:
                killed_last[self.streams[i].name] = self.sent[hid]
        return {"sent": np.array(self.sent), "answered": np.array(self.answered),
                "refused": self.beat_refused, "killed_at": self.killed_at, "killed": killed_last}


# -- subscribers -------------------------------------------------------------------------------


def subscriber_process(queue, role, address: str, names: list[str], rate: float,
                       control: Control, deadline: float) -> None:
    """Look up random *names* at *rate* a second (sent at once when behind, never in bursts)."""
    rows: list[tuple[float, float, int]] = []  # sent, answered (nan: no reply), alive
    period = 1.0 / rate
    with BrokerClient(address, timeout=GIVE_UP) as client:
        client.request("ping")  # connected before the clock starts
        queue.put(("ready", role, None))
        due = time.monotonic()
        while not control.over(deadline):
            now = time.monotonic()
            if due > now:
                time.sleep(due - now)
            due = max(due + period, time.monotonic())
            sent = time.monotonic()
            try:
                alive = client.lookup(random.choice(names)).alive
                rows.append((sent, time.monotonic(), int(alive)))
            except BrokerUnavailable:
                rows.append((sent, float("nan"), 1))
            except StreamNotFound:
                rows.append((sent, time.monotonic(), NOT_FOUND))
    queue.put(("result", role, {"lookups": np.array(rows, float).reshape(-1, 3)}))
