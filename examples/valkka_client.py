"""A Valkka program on framebus: two streams read in one process, select() on EventFds.

Written as for Valkka's shared-memory client; only the import line changed. Serve the
streams as Valkka's lesson 4 did (any source: a camera, a file, or the test pattern)::

    framebus decode rtsp://camera/stream --name cam1 --size 480x270 --format rgb24 --fps 1
    framebus decode testsrc --name cam2 --size 480x270 --format rgb24 --fps 1

Run::

    python examples/valkka_client.py cam1 cam2 [--seconds N]
"""

import argparse
import select
import time

# was: from valkka.api2 import ShmemRGBClient; from valkka.core import EventFd
from framebus.compat.valkka import EventFd, ShmemRGBClient


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("streams", nargs="+")
    parser.add_argument("--size", default="480x270", help="WIDTHxHEIGHT the streams carry")
    parser.add_argument("--seconds", type=float, help="stop after this many seconds")
    args = parser.parse_args()
    width, height = (int(n) for n in args.size.split("x"))

    client_by_fd = {}
    for name in args.streams:
        client = ShmemRGBClient(name=name, n_ringbuffer=10, width=width, height=height,
                                mstimeout=1000, verbose=False)
        event = EventFd()
        client.useEventFd(event)
        client_by_fd[event.getFd()] = client

    end = time.monotonic() + args.seconds if args.seconds else None
    try:
        while end is None or time.monotonic() < end:
            readable, _, _ = select.select(list(client_by_fd), [], [], 1.0)
            for fd in readable:
                client = client_by_fd[fd]
                index, meta = client.pullFrame()
                if index is None:
                    continue
                data = client.shmem_list[index][0:meta.size]
                img = data.reshape((meta.height, meta.width, 3))  # RGB, read-only
                age = time.time() * 1000 - meta.mstimestamp
                print(f"{client.name}: cell {index}, {meta.width}x{meta.height}, "
                      f"mean red {img[..., 0].mean():5.1f}, {age:4.0f} ms old", flush=True)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
