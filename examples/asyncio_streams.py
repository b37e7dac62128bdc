"""Eight streams into one asyncio task: framebus.aio.MultiSubscriber.

One task awaits the frames of every stream the names and patterns match, as they come, in
turn (a busy stream never starves a quiet one), and prints each stream's rate and latency
once a second. The event loop waits on one file descriptor for all of them: no thread per
stream, no polling. Streams that a pattern matches are picked up as they appear; a stream
whose producer stops and comes back is followed.

Run (eight test patterns, then this)::

    for i in 0 1 2 3 4 5 6 7; do framebus testsrc cam$i --size 640x480 --fps 25 & done
    python examples/asyncio_streams.py 'cam*' [--seconds N] [--uvloop]

Ctrl-C stops it, as does --seconds N.
"""

import argparse
import asyncio
import collections
import time

import framebus
from framebus import aio


async def consume(patterns: list[str], seconds: float | None) -> None:
    frames: collections.Counter[str] = collections.Counter()
    latency: collections.Counter[str] = collections.Counter()
    end = None if seconds is None else time.monotonic() + seconds
    async with aio.MultiSubscriber(patterns) as subs:
        print(f"waiting for {patterns}...")
        since = time.monotonic()
        while end is None or time.monotonic() < end:
            try:
                frame = await subs.recv(timeout=1.0)
                frames[frame.stream] += 1
                latency[frame.stream] += frame.age  # seconds since the producer committed it
            except framebus.Timeout:
                pass
            now = time.monotonic()
            if now - since >= 1.0:
                for name in sorted(frames):
                    print(f"{name}: {frames[name] / (now - since):5.1f} fps, latency "
                          f"{latency[name] / frames[name] * 1e3:6.2f} ms, "
                          f"dropped {subs.subscribers[name].dropped}")
                print(f"-- {len(frames)} streams in one task", flush=True)
                frames.clear()
                latency.clear()
                since = now
        print(f"received {subs.received} frames of {len(subs.subscribers)} streams, "
              f"dropped {subs.dropped}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("streams", nargs="*", default=["cam*"], help="names and patterns")
    parser.add_argument("--seconds", type=float, help="stop after this many seconds")
    parser.add_argument("--uvloop", action="store_true", help="run on uvloop")
    args = parser.parse_args()
    if args.uvloop:
        import uvloop

        uvloop.install()
    try:
        asyncio.run(consume(args.streams, args.seconds))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
