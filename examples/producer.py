"""A producer: draw frames and publish them on the bus at 30 fps.

Shows the server side of framebus: a Publisher owns a ring of slots in shared
memory; ``with pub.frame(pts=n) as buf`` hands out the next slot as a writable
(h, w, 3) uint8 array, and the frame is published when the block ends. The
frame is drawn straight into shared memory: no copy.

Run it next to a broker (the one `framebus demo` starts, or `framebus broker`;
$FRAMEBUS_BROKER selects it), through which clients find the stream; without
one it publishes anyway and registers when a broker appears::

    python examples/producer.py [STREAM]        # default stream name "example"
    python examples/client.py example           # in another shell

Ctrl-C (or SIGTERM) stops it; closing the Publisher unlinks its ring.
"""

import signal
import sys
import time
from fractions import Fraction

import cv2

import framebus

FPS = 30
WIDTH, HEIGHT = 1280, 720


def draw(buf, n: int) -> None:
    """Draw frame *n* into *buf* in place: a bouncing ball and the frame counter."""
    buf[:] = (40, 30, 20)  # background, BGR
    x = int((WIDTH - 100) * abs((n / 90) % 2 - 1)) + 50  # back and forth every 3 s
    y = int(HEIGHT / 2 + HEIGHT / 3 * abs((n / 20) % 2 - 1) - HEIGHT / 6)
    cv2.circle(buf, (x, y), 40, (0, 200, 255), -1, cv2.LINE_AA)
    cv2.putText(buf, f"frame {n}", (40, 80), cv2.FONT_HERSHEY_SIMPLEX, 2, (255, 255, 255), 3)


def main() -> None:
    name = sys.argv[1] if len(sys.argv) > 1 else "example"
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # unwind like Ctrl-C
    pub = framebus.Publisher(name, shape=(HEIGHT, WIDTH, 3), fmt="bgr24",
                             time_base=Fraction(1, FPS))
    print(f"publishing {name!r}: {WIDTH}x{HEIGHT} bgr24 at {FPS} fps; Ctrl-C stops")
    start = time.monotonic()
    n = 0
    try:
        while True:
            with pub.frame(pts=n) as buf:  # the next slot, writable, in shared memory
                draw(buf, n)
            n += 1
            # Pace against the clock, so drawing time does not slow the rate down.
            time.sleep(max(0.0, start + n / FPS - time.monotonic()))
    except KeyboardInterrupt:
        pass
    finally:
        pub.close()  # unregister from the broker and unlink the ring
        print(f"published {n} frames")


if __name__ == "__main__":
    main()
