"""The soak's lying producer (tests/soak): a real stream whose descriptors are mostly lies.

    python -m tests.soak.liar NAME --seed S      # in the site's host, FRAMEBUS_BROKER set

It publishes the built-in test pattern (frame *pts* is pattern frame *pts*) through a real
ring at 30 frames a second and, before every frame, sends a few lies on its own
descriptor socket, as a producer gone wrong could: garbage and truncated messages, other
streams' names, slots, sequence numbers, tokens and generations that do not exist, wrong
geometry (framebus.testing.hostile makes them, seeded), and replays of its own recent descriptors
with the timestamps altered or the frame already gone. A reader of NAME must return only
whole frames whose pixels are the pattern frame that their pts says.

Every second it prints a JSON line: {"published": frames, "lies": lies sent}.
"""

from __future__ import annotations

import argparse
import json
import random
import signal
import time
from fractions import Fraction

import msgspec

import framebus
from framebus.names import topic
from framebus.protocol.descriptor import Descriptor
from framebus.testing import hostile as garbage  # the fuzz tests' strategies
from framebus.testsrc import TestPattern

SHAPE = (120, 160, 3)
FPS = 30
TIME_BASE = Fraction(1, FPS)
LIES_PER_FRAME = 3
POOL = 1000  # lies drawn from the strategy, sent over and over in a new order


def replayed(pub: framebus.Publisher, recent: list[Descriptor], rng: random.Random) -> bytes:
    """One of our own recent descriptors, with a field changed: true slot, false facts."""
    d = rng.choice(recent)
    lie = rng.choice([
        {"pts": d.pts + rng.randint(1, 1000)},
        {"timestamp_ns": d.timestamp_ns - rng.randint(1, 10**9)},
        {"seq": d.seq + pub._ring.slot_count},  # the same slot, a frame not yet written
        {},  # a plain replay: a frame older than one the reader may already have
    ])
    return topic(pub.name) + msgspec.structs.replace(d, **lie).pack()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("name")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
    rng = random.Random(args.seed)
    pattern = TestPattern(SHAPE)
    with framebus.Publisher(args.name, SHAPE, fmt="bgr24", time_base=TIME_BASE) as pub:
        # Drawn once, before the first frame: hypothesis takes seconds for them, which in
        # the loop would stall the stream.
        pool = garbage.draw(garbage.lying_descriptors(garbage.RingFacts.of(pub)), POOL,
                            seed=args.seed)
        lies: list[bytes] = []
        recent: list[Descriptor] = []
        published = sent = 0
        start = next_line = time.monotonic()
        while not stopping:
            # The lies go first: a reader of the newest frame keeps only the last message
            # (ZMQ_CONFLATE), so lies sent after each frame would hide every true one.
            for _ in range(LIES_PER_FRAME if recent else 0):
                if not lies:
                    lies = rng.sample(pool, len(pool))
                lie = lies.pop() if rng.random() < 0.7 else replayed(pub, recent, rng)
                pub._socket.send(lie)  # a producer gone wrong speaks on its own socket
                sent += 1
            with pub.frame(pts=published) as buf:
                pattern.fill(buf, published)
            recent = (recent + [published_last(pub)])[-16:]
            published += 1
            if time.monotonic() >= next_line:
                next_line += 1.0
                print(json.dumps({"published": published, "lies": sent}), flush=True)
            delay = start + published / FPS - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        print(json.dumps({"published": published, "lies": sent}), flush=True)


def published_last(pub: framebus.Publisher) -> Descriptor:
    """The descriptor *pub* has just sent, rebuilt from its ring."""
    ring, seq = pub._ring, pub.seq - 1
    slot = ring.slot_of(seq)
    _, pts, timestamp_ns = ring.slot_info(slot)
    g = ring.geometry
    return Descriptor(stream=pub.name, generation=ring.generation, token=ring.token, seq=seq,
                      slot=slot, pts=pts, time_base=TIME_BASE, timestamp_ns=timestamp_ns,
                      shape=g.shape, dtype=g.dtype.str, fmt=g.fmt)


if __name__ == "__main__":
    main()
