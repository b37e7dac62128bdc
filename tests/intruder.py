"""Another Unix user's attempts on a live stream: run by tests/test_other_users.py.

    python tests/intruder.py UID GID STREAM ROUNDS

Started as root so that it can import framebus from wherever the venv lies, it drops to
UID:GID before it does anything else, and is from then on a process of that user, with no
way back. It then tries, ROUNDS times, everything the broker must refuse, and prints one
JSON object: for each attempt, how it ended ("refused: <code or error>" or "accepted").
"""

from __future__ import annotations

import json
import os
import sys
from collections import Counter

import numpy as np

import framebus
from framebus import config
from framebus.discovery import BrokerClient
from framebus.shm.layout import Geometry, Header
from framebus.shm.ring import RingReader, RingWriter


def drop_to(uid: int, gid: int) -> None:
    os.setgroups([])
    os.setgid(gid)
    os.setuid(uid)
    assert os.getuid() == uid and os.geteuid() == uid


def outcome(attempt) -> str:
    try:
        attempt()
    except (framebus.FramebusError, PermissionError) as exc:
        if os.environ.get("INTRUDER_SAY"):
            print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
        return f"refused: {type(exc).__name__}"
    return "accepted"


def forge(victim: framebus.StreamInfo) -> RingWriter:
    """A ring of this user's whose header claims to be written by the victim's pid."""
    ring = RingWriter.create(f"/forged-{os.getpid()}.{victim.name}",
                             Geometry((4, 4, 3), np.dtype("uint8"), "bgr24"), 2)
    header = Header.for_new_ring(ring.geometry, 2, 0, ring.token, victim.pid, 0).pack()
    ring._mm[: len(header)] = header
    return ring


def attempts(client: BrokerClient, victim: framebus.StreamInfo, own: RingWriter,
             forged: RingWriter) -> dict:
    """Each thing another user must not be able to do to *victim*."""
    me = os.getpid()
    secret = os.urandom(16)

    def register(**claims) -> None:
        fields = dict(name=victim.name, host=config.host_id(), pid=me, segment=own.name,
                      endpoint=victim.endpoint, token=own.token, secret=secret,
                      generation=victim.generation + 1, shape=list(victim.shape),
                      dtype=victim.dtype, fmt=victim.fmt, slots=victim.slots)
        client.request("register", **{**fields, **claims})

    return {
        "map the victim's ring": lambda: RingReader.open(victim.segment).close(),
        "replace it with my ring": lambda: register(),
        "replace it claiming its pid, with my ring": lambda: register(pid=victim.pid),
        "replace it with a ring forged to claim its pid": lambda: register(
            pid=victim.pid, segment=forged.name, token=forged.token),
        "replace it claiming its pid, token and ring": lambda: register(
            pid=victim.pid, token=victim.token, segment=victim.segment),
        "fake a stream of another host": lambda: register(
            name="ghost", host="elsewhere", segment=f"/intruder-{me}.ghost"),
        "claim another host's relay": lambda: client.request(
            "relay", host="elsewhere", endpoint="tcp://127.0.0.1:9", pid=me),
        "claim this host's relay": lambda: client.request(
            "relay", host=config.host_id(), endpoint="tcp://127.0.0.1:9", pid=me),
        "heartbeat it": lambda: client.request("heartbeat", name=victim.name,
                                               token=victim.token, secret=secret),
        "unregister it": lambda: client.request("unregister", name=victim.name,
                                                token=victim.token, secret=secret),
    }


def main() -> None:
    uid, gid, stream, rounds = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
    drop_to(uid, gid)
    # A ring of its own whose name ends in the stream's, as a registration of it must.
    own = RingWriter.create(f"/intruder-{os.getpid()}.{stream}",
                            Geometry((4, 4, 3), np.dtype("uint8"), "bgr24"), 2)
    try:
        with BrokerClient() as client:
            victim = client.lookup(stream)
            forged = forge(victim)
            try:
                results: dict[str, Counter] = {}
                for _ in range(rounds):
                    for what, attempt in attempts(client, victim, own, forged).items():
                        results.setdefault(what, Counter())[outcome(attempt)] += 1
            finally:
                forged.close()
    finally:
        own.close()
    print(json.dumps({what: dict(counts) for what, counts in results.items()}))


if __name__ == "__main__":
    main()
