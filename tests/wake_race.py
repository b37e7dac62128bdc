"""The two sides of the wake-up stress test, each run as a process of its own.

    python tests/wake_race.py writer NAME ROUNDS READERS ACKS
    python tests/wake_race.py reader NAME MODE ACKS ROUNDS

The writer publishes a frame every 5 ms until a line on stdin (the readers take the wake-up
meanwhile), then ROUNDS rounds: a flat-out burst of 1 to 4 frames whose last carries the
round in its pts, and a wait until every reader has acknowledged that round on the datagram
socket ACKS. Each round thus ends with the readers going back to sleep while the writer's
next burst races them (after a pause of nothing to 200 µs). A reader sleeps on fileno()
with a 10 s timeout: a wake-up lost in that race leaves it asleep until the timeout, which
it counts (`timeouts`), and the writer sees as a round that stalled (`stalls`). Each prints a
JSON summary last; the writer then stays until another line on stdin.
"""

from __future__ import annotations

import json
import random
import select
import selectors
import socket
import struct
import sys
import time

import numpy as np

import framebus

SHAPE = (16, 16, 3)
ACK = struct.Struct("<q")


def writer(name: str, rounds: int, readers: int, acks_path: str) -> None:
    rng = random.Random(1)
    image = np.zeros(SHAPE, np.uint8)
    acks = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    acks.bind(acks_path)
    stalls = 0
    with framebus.Publisher(name, shape=SHAPE, slots=64) as pub:
        while not select.select([sys.stdin], [], [], 0.005)[0]:
            pub.publish(image)
        sys.stdin.readline()
        started = time.monotonic()
        for r in range(rounds):
            for _ in range(rng.randint(0, 3)):
                pub.publish(image)
            pub.publish(image, pts=r)
            if not _acknowledged(acks, r, readers):
                stalls += 1
            pause = rng.choice((0.0, 0.0, 0.0, 1e-5, 5e-5, 2e-4))
            if pause:
                time.sleep(pause)
        print(json.dumps({"rounds": rounds, "stalls": stalls, "last": pub.seq - 1,
                          "seconds": round(time.monotonic() - started, 2)}), flush=True)
        sys.stdin.readline()


def _acknowledged(acks: socket.socket, r: int, readers: int) -> bool:
    """Whether every reader acknowledged round *r* within 5 s (a lost wake-up: 10 s)."""
    seen, deadline = 0, time.monotonic() + 5.0
    while seen < readers:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([acks], [], [], left)[0]:
            return False
        if ACK.unpack(acks.recv(ACK.size))[0] == r:
            seen += 1
    return True


def reader(name: str, mode: str, acks_path: str, rounds_wanted: int) -> None:
    acks = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    with framebus.Subscriber(name, mode=mode) as sub:
        selector = selectors.DefaultSelector()
        selector.register(sub, selectors.EVENT_READ)
        frames = timeouts = rounds = 0
        woken, done = False, False
        deadline = time.monotonic() + 120
        while not done and time.monotonic() < deadline:
            if not woken and getattr(sub._path, "_woken", None) is not None:
                woken = True
                print("woken", flush=True)
            if not selector.select(10.0 if woken else sub.housekeeping) and woken:
                timeouts += 1
            while (frame := sub.try_recv()) is not None:
                frames += 1
                if frame.pts is not None:
                    rounds += 1
                    acks.sendto(ACK.pack(frame.pts), acks_path)
                    done = frame.pts == rounds_wanted - 1
        print(json.dumps({"rounds": rounds, "frames": frames, "timeouts": timeouts,
                          "woken": woken, "dropped": sub.dropped}), flush=True)


if __name__ == "__main__":
    if sys.argv[1] == "writer":
        writer(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5])
    else:
        reader(sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]))
