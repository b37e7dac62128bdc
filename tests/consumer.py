"""A consumer process for the tests: receives frames, checks each one by content
against the test pattern, and prints a JSON summary as its last line.

Raw frames must match the pattern exactly; JPEG frames (lossy) must come within
--min-psnr dB of it.
"""

import argparse
import json
import time

import numpy as np

import framebus
from framebus.testsrc import TestPattern


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else float(10 * np.log10(255.0**2 / mse))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("name")
    ap.add_argument("--frames", type=int, default=50, help="stop after this many frames")
    ap.add_argument("--timeout", type=float, default=20.0, help="give up after this long")
    ap.add_argument("--seconds", type=float, help="receive for this long instead of --frames")
    ap.add_argument("--mode", default="latest")
    ap.add_argument("--transport", default="auto")
    ap.add_argument("--codec", default="raw")
    ap.add_argument("--quality", type=int, default=90)
    ap.add_argument("--delay", type=float, default=0.0,
                    help="sleep after each frame: a slow reader")
    ap.add_argument("--min-psnr", type=float, default=30.0)
    ap.add_argument("--ready", action="store_true", help="print 'ready' after the first frame")
    args = ap.parse_args()

    good = bad = overwritten = timeouts = 0
    streams, seqs, paths, worst = set(), [], set(), float("inf")
    patterns: dict = {}
    started = time.monotonic()
    end = started + (args.seconds if args.seconds else args.timeout)
    first = last = None
    with framebus.Subscriber(args.name, mode=args.mode, transport=args.transport,
                             codec=args.codec, quality=args.quality) as sub:
        while (args.seconds or good + bad < args.frames) and time.monotonic() < end:
            try:
                frame = sub.recv(timeout=0.5)
            except framebus.Timeout:
                timeouts += 1
                continue
            try:
                pixels = frame.copy()
            except framebus.FrameOverwritten:
                overwritten += 1
                continue
            if first is None:
                first = time.monotonic()
                if args.ready:
                    print("ready", flush=True)
            last = time.monotonic()
            pattern = patterns.setdefault(pixels.shape, TestPattern(pixels.shape))
            expected = pattern.frame(frame.seq)
            quality = psnr(pixels, expected)
            worst = min(worst, quality)
            if quality == float("inf") or (args.codec == "jpeg" and quality >= args.min_psnr):
                good += 1
            else:
                bad += 1
            streams.add(frame.stream)
            paths.add(sub.path)
            seqs.append(frame.seq)
            if args.delay:
                time.sleep(args.delay)
        span = (last - first) if first is not None and last > first else 0.0
        print(json.dumps({"good": good, "bad": bad, "overwritten": overwritten,
                          "streams": sorted(streams), "seqs": seqs, "dropped": sub.dropped,
                          "received": sub.received, "paths": sorted(paths),
                          "fps": (len(seqs) - 1) / span if span else 0.0,
                          "timeouts": timeouts, "worst_psnr": worst if seqs else None}),
              flush=True)


if __name__ == "__main__":
    main()
