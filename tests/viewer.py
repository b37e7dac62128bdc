"""A user granted a site's streams through a group: run by tests/test_other_users.py.

    python tests/viewer.py UID GID GROUPS STREAM

Started as root (to import framebus from wherever it lies), it drops to UID:GID with the
supplementary GROUPS (comma-separated gids, possibly none), then subscribes to STREAM and
prints one JSON object: the frame it got, or the error that stopped it.
"""

from __future__ import annotations

import json
import os
import sys

import framebus


def main() -> None:
    uid, gid, groups, stream = sys.argv[1:5]
    os.setgroups([int(g) for g in groups.split(",") if g])
    os.setgid(int(gid))
    os.setuid(int(uid))
    try:
        with framebus.Subscriber(stream, transport="shm") as sub:
            frame = sub.recv(timeout=5)
            pixels = frame.copy()
            print(json.dumps({"seq": frame.seq, "shape": list(pixels.shape),
                              "writeable": bool(frame.array.flags.writeable)}))
    except framebus.FramebusError as exc:
        print(json.dumps({"error": f"{type(exc).__name__}: {exc}"}))


if __name__ == "__main__":
    main()
