"""A client: receive frames of a stream and print live figures once a second.

Shows the high-level consumer API: a Subscriber finds the stream through the
broker, maps its ring read-only, and yields Frames whose ``array`` is a view
into shared memory (no copy). In the default "latest" mode a slow client
always gets the newest frame; ``sub.dropped`` counts the frames it missed.

Run (against `framebus demo`, or examples/producer.py with STREAM=example)::

    python examples/client.py [STREAM] [--seconds N]   # default stream "demo"

Ctrl-C stops it, as does --seconds N (useful in scripts and tests).
"""

import argparse
import signal
import time

import framebus


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("stream", nargs="?", default="demo")
    parser.add_argument("--seconds", type=float, help="stop after this many seconds")
    args = parser.parse_args()
    if args.seconds:  # a timer that raises KeyboardInterrupt, even while no frame comes
        signal.signal(signal.SIGALRM, signal.default_int_handler)
        signal.setitimer(signal.ITIMER_REAL, args.seconds)

    with framebus.Subscriber(args.stream) as sub:
        print(f"waiting for {args.stream!r}...")
        frames, latency, since = 0, 0.0, time.monotonic()
        try:
            for frame in sub:
                frames += 1
                latency += frame.age  # seconds since the producer finished the frame
                now = time.monotonic()
                if now - since >= 1.0:
                    print(f"{frame.stream}: {frames / (now - since):5.1f} fps, "
                          f"latency {latency / frames * 1e3:6.2f} ms, shape {frame.shape}, "
                          f"seq {frame.seq}, dropped {sub.dropped}")
                    frames, latency, since = 0, 0.0, now
        except KeyboardInterrupt:
            pass
        print(f"received {sub.received} frames, dropped {sub.dropped}")


if __name__ == "__main__":
    main()
