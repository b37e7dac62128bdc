"""An OpenCV client: blur every frame, show it in a window or save a JPEG of it.

Shows how to process frames with OpenCV without copying them out of shared
memory: ``frame.array`` is a read-only (h, w, 3) uint8 view of the ring slot,
so OpenCV reads it directly and writes its result into a new array. The
producer never waits for readers: if it reused the slot while we were still
reading, ``frame.valid()`` turns False and the result must be thrown away.

With a display ($DISPLAY set, and an OpenCV built with GUI support) the
result goes live to a window; otherwise (e.g. with opencv-python-headless,
which framebus installs) a JPEG of it is written once a second.

Run (against `framebus demo`)::

    python examples/opencv_client.py [STREAM] [--out blurred.jpg] [--seconds N]

Ctrl-C stops it, as does --seconds N; in a window, so does the q key.
"""

import argparse
import os
import signal
import time

import cv2

import framebus


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("stream", nargs="?", default="demo")
    parser.add_argument("--out", default="blurred.jpg", help="JPEG to write without a display")
    parser.add_argument("--seconds", type=float, help="stop after this many seconds")
    args = parser.parse_args()
    if args.seconds:  # a timer that raises KeyboardInterrupt, even while no frame comes
        signal.signal(signal.SIGALRM, signal.default_int_handler)
        signal.setitimer(signal.ITIMER_REAL, args.seconds)
    gui = bool(os.environ.get("DISPLAY"))
    processed = overwritten = 0
    next_output = time.monotonic()

    with framebus.Subscriber(args.stream) as sub:
        try:
            for frame in sub:
                image = frame.array  # (h, w, 3) uint8, read-only, in shared memory
                blurred = cv2.GaussianBlur(image, (31, 31), 0)  # a new, private array
                if not frame.valid():  # the producer reused the slot while we read it
                    overwritten += 1
                    continue
                processed += 1
                if gui:
                    try:
                        cv2.imshow(f"framebus: {frame.stream} (blurred)", blurred)
                        if cv2.waitKey(1) & 0xFF == ord("q"):
                            break
                        continue
                    except cv2.error:  # e.g. opencv-python-headless: no imshow
                        print("this OpenCV has no GUI support; writing JPEGs instead")
                        gui = False
                if time.monotonic() >= next_output:
                    next_output = time.monotonic() + 1.0
                    cv2.imwrite(args.out, blurred)
                    print(f"seq {frame.seq}: wrote {os.path.abspath(args.out)} "
                          f"({processed} processed, {overwritten} overwritten, "
                          f"{sub.dropped} dropped)")
        except KeyboardInterrupt:
            pass
    if gui:
        cv2.destroyAllWindows()
    print(f"processed {processed} frames, {overwritten} overwritten while processing")


if __name__ == "__main__":
    main()
