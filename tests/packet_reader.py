"""A packet reader process for the tests: reads a packet stream with PacketSubscriber (local or
through a relay, as discovery says) and prints a JSON summary as its last line: each packet's
ring token, seq, key-frame flag, skipped count and a digest of its bytes."""

import argparse
import hashlib
import json
import select
import sys
import time

from framebus.errors import Timeout
from framebus.packets import PacketSubscriber


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("name")
    ap.add_argument("--packets", type=int, default=100, help="stop after this many")
    ap.add_argument("--seconds", type=float, help="read for this long instead")
    ap.add_argument("--timeout", type=float, default=20.0)
    ap.add_argument("--preroll", type=float, default=0.0)
    ap.add_argument("--delay", type=float, default=0.0, help="sleep after each: a slow reader")
    ap.add_argument("--stall", type=float, default=0.0, help="sleep after the first packet")
    ap.add_argument("--ready", action="store_true", help="print 'ready' after the first")
    ap.add_argument("--fileno", action="store_true",
                    help="wait on fileno() with select, and say whether it stayed the same")
    args = ap.parse_args()
    got: list[list] = []
    end = time.monotonic() + (args.seconds or args.timeout)
    with PacketSubscriber(args.name, preroll=args.preroll) as sub:
        fd = sub.fileno()
        codec = sub.codec
        while (args.seconds or len(got) < args.packets) and time.monotonic() < end:
            try:
                p = wait_on_fileno(sub, fd) if args.fileno else sub.recv(timeout=0.5)
            except Timeout:
                continue
            got.append([p.token.hex(), p.seq, p.keyframe, p.skipped, p.pts,
                        hashlib.sha1(p.data).hexdigest()[:16], p.codec.name])
            if len(got) == 1:
                codec = codec or p.codec  # none before the producer was
                if args.ready:
                    print("ready", flush=True)
                time.sleep(args.stall)
            if args.delay:
                time.sleep(args.delay)
        remote = getattr(sub, "_remote", None)
        print(json.dumps({"packets": got, "dropped": sub.dropped, "received": sub.received,
                          "fileno_kept": sub.fileno() == fd,
                          "rejected": sub.rejected, "remote": remote is not None,
                          "codec": None if codec is None else [codec.name, codec.width,
                                                               codec.extradata.hex()]}))
    sys.stdout.flush()


def wait_on_fileno(sub: PacketSubscriber, fd: int):
    """The next packet, waiting on *fd* as an event loop would (a poll every 0.1 s at most,
    as fileno() may signal only a change)."""
    deadline = time.monotonic() + 0.5
    while (packet := sub.try_recv()) is None:
        if time.monotonic() > deadline:
            raise Timeout("none within 0.5 s")
        select.select([fd], [], [], 0.1)
    return packet


if __name__ == "__main__":
    main()
