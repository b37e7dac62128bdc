"""A consumer process for the tests: receives frames, checks each one by content
against the test pattern, and prints a JSON summary as its last line."""

import argparse
import json
import time

import framebus
from framebus.testsrc import TestPattern


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("name")
    ap.add_argument("--frames", type=int, default=50, help="stop after this many frames")
    ap.add_argument("--timeout", type=float, default=20.0, help="give up after this long")
    ap.add_argument("--mode", default="latest")
    args = ap.parse_args()

    good = bad = overwritten = 0
    streams, seqs, patterns = set(), [], {}
    end = time.monotonic() + args.timeout
    with framebus.Subscriber(args.name, mode=args.mode) as sub:
        while good + bad < args.frames and time.monotonic() < end:
            try:
                frame = sub.recv(timeout=0.5)
            except framebus.Timeout:
                continue
            try:
                pixels = frame.copy()
            except framebus.FrameOverwritten:
                overwritten += 1
                continue
            pattern = patterns.setdefault(frame.shape, TestPattern(frame.shape))
            if pattern.matches(pixels, frame.seq):
                good += 1
            else:
                bad += 1
            streams.add(frame.stream)
            seqs.append(frame.seq)
        print(json.dumps({"good": good, "bad": bad, "overwritten": overwritten,
                          "streams": sorted(streams), "seqs": seqs, "dropped": sub.dropped,
                          "received": sub.received}), flush=True)


if __name__ == "__main__":
    main()
