"""How fast can a writer wake a reader in another process? The candidates for a local
subscriber's wake-up, side by side, from Python.

Each mechanism carries one wake-up per "frame": the writer stores the frame's sequence
number and CLOCK_MONOTONIC time in shared memory, then wakes; the reader wakes, reads
both, and records how long the wake-up took. Paced (a frame every --interval seconds, so
the reader is asleep when the writer wakes it, as with a camera), one reader.

- ``semaphore``: a POSIX named semaphore (posix_ipc), post and wait: the floor the issue
  names;
- ``futex``: FUTEX_WAIT on the shared sequence word, FUTEX_WAKE after the store: a
  reader costs the writer nothing, any number wake with one syscall;
- ``futex_waitv``: the same word, waited on with futex_waitv (Linux 5.16+), which waits
  on up to 128 words at once: one thread for many streams;
- ``eventfd``: an eventfd the reader polls: an fd an event loop can watch;
- ``zmq``: today's path, a ~150-byte descriptor over ZeroMQ ipc PUB/SUB.

Run: ``python -m bench.wakeup [--frames N] [--interval S]``. The figures are Python's
(the syscall is a microsecond, the interpreter around it is most of the rest).
"""

from __future__ import annotations

import argparse
import ctypes
import mmap
import multiprocessing as mp
import os
import select
import struct
import time
from collections.abc import Callable

import numpy as np

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long
SYS_FUTEX = 202  # x86-64
SYS_FUTEX_WAITV = 449
FUTEX_WAIT, FUTEX_WAKE = 0, 1  # shared (not FUTEX_PRIVATE_FLAG): across processes
FUTEX_32 = 2
WORD = struct.Struct("<Iq")  # the sequence word (u32, the futex), then the time (ns)


class _Waitv(ctypes.Structure):
    _fields_ = [("val", ctypes.c_uint64), ("uaddr", ctypes.c_uint64),
                ("flags", ctypes.c_uint32), ("reserved", ctypes.c_uint32)]


def _shared() -> tuple[mmap.mmap, int]:
    mm = mmap.mmap(-1, 4096)  # MAP_SHARED | MAP_ANONYMOUS: inherited by the forked reader
    address = ctypes.addressof(ctypes.c_char.from_buffer(mm))
    return mm, address


def _stamp(mm: mmap.mmap, seq: int) -> None:
    WORD.pack_into(mm, 0, seq, time.monotonic_ns())


def _delay(mm: mmap.mmap) -> tuple[int, int]:
    now = time.monotonic_ns()
    seq, then = WORD.unpack_from(mm, 0)
    return seq, now - then


# -- the mechanisms: (setup in the parent, writer's wake, reader's wait) -------------------

def semaphore(name: str) -> tuple[Callable[[], None], Callable[[], None], Callable[[], None]]:
    import posix_ipc

    sem = posix_ipc.Semaphore(name, posix_ipc.O_CREX, 0o600, 0)
    sem.unlink()  # the forked reader keeps its handle; nothing is left in /dev/shm
    return sem.release, sem.acquire, sem.close


def futex(address: int, mm: mmap.mmap, waitv: bool):
    word = ctypes.c_uint32.from_address(address)

    def wake() -> None:
        _libc.syscall(SYS_FUTEX, ctypes.c_void_p(address), FUTEX_WAKE, 2**31 - 1, None, None, 0)

    if waitv:
        waiters = (_Waitv * 1)()
        waiters[0].uaddr, waiters[0].flags = address, FUTEX_32

        def wait_for(seen: int) -> None:
            while word.value == seen:
                waiters[0].val = seen
                if _libc.syscall(SYS_FUTEX_WAITV, waiters, 1, 0, None, 1) < 0:
                    errno = ctypes.get_errno()
                    if errno not in (11, 4):  # EAGAIN: the word moved; EINTR
                        raise OSError(errno, os.strerror(errno))
    else:
        def wait_for(seen: int) -> None:
            while word.value == seen:  # woken, or the word moved before we slept: look
                _libc.syscall(SYS_FUTEX, ctypes.c_void_p(address), FUTEX_WAIT, seen, None,
                              None, 0)
    return wake, wait_for


def _reader(kind: str, frames: int, mm: mmap.mmap, address: int, handles, out) -> None:
    delays = np.empty(frames, np.int64)
    if kind == "semaphore":
        _, acquire, _ = handles
        for i in range(frames):
            acquire()
            delays[i] = _delay(mm)[1]
    elif kind in ("futex", "futex_waitv"):
        _, wait_for = futex(address, mm, kind == "futex_waitv")
        seen, i = 0, 0
        while seen < frames:  # by seq: a wake-up that comes late may cover two frames
            wait_for(seen)
            seen, delays[i] = _delay(mm)
            i += 1
        delays = delays[:i]
    elif kind == "eventfd":
        fd = handles
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        for i in range(frames):
            poller.poll()
            os.eventfd_read(fd)
            delays[i] = _delay(mm)[1]
    elif kind == "zmq":
        import zmq

        sock = zmq.Context().socket(zmq.SUB)
        sock.setsockopt(zmq.SUBSCRIBE, b"")
        sock.connect(handles)
        out.put("ready")
        for i in range(frames):
            message = sock.recv()
            now = time.monotonic_ns()
            delays[i] = now - struct.unpack_from("<q", message, 0)[0]
    out.put(delays)


def run(kind: str, frames: int, interval: float) -> np.ndarray:
    mm, address = _shared()
    ctx = mp.get_context("fork")
    out = ctx.Queue()
    handles: object = None
    if kind == "semaphore":
        handles = semaphore(f"/framebus-bench-wakeup-{os.getpid()}")
        wake = handles[0]
    elif kind in ("futex", "futex_waitv"):
        wake, _ = futex(address, mm, kind == "futex_waitv")
    elif kind == "eventfd":
        handles = os.eventfd(0, os.EFD_NONBLOCK)
        fd = handles

        def wake() -> None:
            os.eventfd_write(fd, 1)
    else:
        import zmq

        pub = zmq.Context().socket(zmq.PUB)
        endpoint = f"ipc:///tmp/framebus-bench-wakeup-{os.getpid()}.sock"
        pub.bind(endpoint)
        handles = endpoint
        padding = bytes(142)

        def wake() -> None:
            pub.send(struct.pack("<q", time.monotonic_ns()) + padding)
    reader = ctx.Process(target=_reader, args=(kind, frames, mm, address, handles, out))
    reader.start()
    try:
        if kind == "zmq":
            out.get(timeout=10)
            time.sleep(0.3)  # the slow joiner: let the subscription reach the publisher
        time.sleep(0.2)
        for seq in range(1, frames + 1):
            time.sleep(interval)
            if kind != "zmq":
                _stamp(mm, seq)
            wake()
        delays = out.get(timeout=30)
    finally:
        reader.join(5)
        if reader.is_alive():
            reader.kill()
        if kind == "zmq":
            pub.close(linger=0)
            os.unlink(endpoint[len("ipc://"):])
        elif kind == "eventfd":
            os.close(fd)
    return delays / 1000.0  # µs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=2000)
    parser.add_argument("--interval", type=float, default=0.002,
                        help="seconds between frames (default 2 ms)")
    args = parser.parse_args()
    print(f"one reader, {args.frames} wake-ups, one every {args.interval * 1000:.1f} ms; "
          f"load {os.getloadavg()[0]:.2f}")
    print(f"{'mechanism':<14}{'p50 µs':>9}{'p90 µs':>9}{'p99 µs':>9}")
    for kind in ("semaphore", "futex", "futex_waitv", "eventfd", "zmq"):
        d = run(kind, args.frames, args.interval)
        p50, p90, p99 = np.percentile(d, [50, 90, 99])
        print(f"{kind:<14}{p50:>9.1f}{p90:>9.1f}{p99:>9.1f}")


if __name__ == "__main__":
    main()
