"""Frame-sized buffers that the heap keeps, instead of pages the kernel zeroes for every frame.

A frame received over TCP lands in a buffer libzmq mallocs for it (6 MB at 1080p), and is
freed once the caller drops the frame. glibc serves an allocation that large with a fresh
mmap, and gives it back with munmap on free: every frame then costs its buffer's page
faults, each page zeroed by the kernel before libzmq writes over it. glibc's dynamic
threshold saves a program that frees each buffer before it allocates the next, but a
reader holds one frame while the next arrives, and then the heap still maps or trims the
buffers afresh (tests/test_heap.py: 4,565 faults in 30 frames). At 1080p that is ~0.8 ms of
a core per frame, a quarter of what a remote subscriber spends on one (docs/remote.md).

``keep_buffers(nbytes)`` tells glibc (``mallopt``) to serve allocations of up to a few
frames from its heap and to keep that much free memory instead of trimming it, so the next
frame reuses the last one's pages. It only ever raises the settings, costs at most
TRIM_FRAMES frames of free memory per heap (glibc has one per thread that allocates), and
does nothing where the C library is not glibc, or with ``FRAMEBUS_KEEP_BUFFERS=0``.
"""

from __future__ import annotations

import ctypes
import logging
import math
import os
import threading
from collections.abc import Callable, Sequence
from typing import cast

import numpy as np

log = logging.getLogger(__name__)

#: mallopt parameters (glibc's malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
#: glibc refuses a mmap threshold above HEAP_MAX_SIZE / 2: 32 MiB on 64-bit hosts.
MMAP_THRESHOLD_MAX = 32 * 2**20
#: Free memory a heap keeps, in frames: one being received while the caller holds another,
#: and room for a frame of another stream.
TRIM_FRAMES = 4
ENV = "FRAMEBUS_KEEP_BUFFERS"

_lock = threading.Lock()
_kept = 0  # the largest frame size the settings were raised for


def keep_buffers(nbytes: int) -> bool:
    """Keep frame buffers of *nbytes* in the heap from frame to frame; True if the settings
    are (now) raised for frames this large. Idempotent; safe from any thread."""
    global _kept
    if nbytes <= _kept:
        return True
    if nbytes >= MMAP_THRESHOLD_MAX or os.environ.get(ENV, "1") == "0":
        return False
    mallopt = _MALLOPT
    if mallopt is None:
        return False
    with _lock:
        if nbytes <= _kept:
            return True
        threshold = min(MMAP_THRESHOLD_MAX, 2 * nbytes)
        # The mmap threshold first: then blocks of this size come from the heap (with room
        # for libzmq's header), and the trim threshold keeps them there once freed.
        if not (mallopt(_M_MMAP_THRESHOLD, threshold)
                and mallopt(_M_TRIM_THRESHOLD, TRIM_FRAMES * nbytes)):
            log.debug("mallopt refused a threshold of %d bytes", threshold)
            return False
        _kept = nbytes
    log.debug("the heap keeps buffers of up to %d bytes (frames of %d)", threshold, nbytes)
    return True


def keep_frames(shape: Sequence[int], dtype: str) -> bool:
    """``keep_buffers`` for frames of *shape* and *dtype*; False for a dtype numpy lacks."""
    try:
        itemsize = np.dtype(dtype).itemsize
    except TypeError:
        return False
    return keep_buffers(math.prod(shape) * itemsize)


def _glibc_mallopt() -> Callable[[int, int], int] | None:
    """glibc's mallopt, or None elsewhere (musl has a mallopt that ignores these)."""
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version  # noqa: B018 (a lookup: raises AttributeError off glibc)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return None
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    return cast(Callable[[int, int], int], mallopt)


_MALLOPT = _glibc_mallopt()
