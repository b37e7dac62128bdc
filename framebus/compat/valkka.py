"""Valkka's shared-memory client API, on framebus.

A program written for Valkka's shared-memory client runs on framebus when only its import
line changes::

    from framebus.compat.valkka import ShmemRGBClient, EventFd   # was: from valkka...

Valkka's server side is played by ``framebus decode SOURCE --name NAME --size 480x270
--format rgb24 --fps 1``; docs/valkka.md sets each Valkka call beside its counterpart.

**Cells.** Valkka's client keeps an index of its own cycling through *n* cells, and a cell's
array holds its frame until that cell comes round again. A framebus writer reuses a slot
of its ring whatever readers do, so a view of a slot could change under a program still
using it (and a Valkka program has no ``valid()`` to ask). So each pull copies the frame
into the client's next private cell, checked whole after the copy (a frame overwritten
meanwhile is skipped, never handed out): a cell changes only when this client's own index
comes back to it. The copy costs 0.03 ms at 480x270, 0.8 to 1.5 ms at 1920x1080.

The cells are read-only: a write raises ``ValueError``. Any number of clients may read one
stream. The camelCase names are Valkka's, kept so that its programs run unchanged.
"""

from __future__ import annotations

import collections
import logging
import os
import threading
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from .. import pixfmt
from ..errors import FramebusError, FrameOverwritten, Timeout
from ..frame import Frame
from ..subscriber import Subscriber

log = logging.getLogger(__name__)

__all__ = ["EventFd", "GeometryMismatch", "RGB24Meta", "SharedMemRingBufferRGB",
           "ShmemRGBClient", "getNumpyShmem"]

SERVER_COMMAND = "framebus decode SOURCE --name {name} --size {width}x{height} --format rgb24"
#: How often a client's receiving thread looks up from waiting to see if it should stop (s).
_STOP_CHECK = 0.25


class GeometryMismatch(FramebusError, ValueError):
    """The stream's frames are not the rgb24 pictures of the size the client was built for."""


@dataclass
class RGB24Meta:
    """What Valkka tells of a pulled frame (its struct of the same name)."""

    size: int         #: bytes of the picture at the start of the cell: width * height * 3
    width: int
    height: int
    slot: int         #: Valkka's stream number: the client's ``slot=`` (framebus has names)
    mstimestamp: int  #: wall-clock milliseconds when the producer wrote the frame


class EventFd:
    """A file descriptor that ``select`` reports readable while a client has a frame ready.

    As in Valkka: ``EventFd()``, ``getFd()``, ``set()``, ``clear()``, and
    ``client.useEventFd(ev)`` ties it to one client. Here it is a Linux eventfd that the
    client itself keeps set while frames wait for ``pullFrame()`` and clears when none do,
    so it is level-triggered and exact: readable means a pull returns at once. No fork is
    needed for it to work: the server is another program, and the fd lives here.
    """

    def __init__(self) -> None:
        self._fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self._client: SharedMemRingBufferRGB | None = None

    def getFd(self) -> int:
        return self._fd

    fileno = getFd  # so that the EventFd itself can go to select, poll or selectors

    def set(self) -> None:
        os.eventfd_write(self._fd, 1)

    def clear(self) -> None:
        """Unset it. Clearing one that is not set is harmless (in Valkka it crashes)."""
        try:
            os.eventfd_read(self._fd)
        except BlockingIOError:
            pass

    def close(self) -> None:
        """Close the fd; its client, if still open, stops signalling through it first (a
        closed fd's number may be reused at once by another file)."""
        if self._client is not None:
            self._client.clientUseFd(None)
        if self._fd >= 0:
            os.close(self._fd)
        self._fd = -1

    def __repr__(self) -> str:
        return f"<EventFd fd={self._fd}>"


class _Receiver:
    """Receives a client's frames in a thread of its own, for a client that an EventFd serves.

    Why a thread: a program in select() calls the client only once the fd is readable, but a
    Subscriber does its work (taking descriptors, asking the broker again when a producer
    restarts or moves) inside recv(), and has no fd to wake on. ZeroMQ's socket fd would not
    do: it is edge-triggered, absent while the stream waits for its producer, and replaced
    when the subscriber changes path. So the thread calls recv() and keeps the EventFd set
    exactly while frames wait here.
    """

    def __init__(self, sub: Subscriber, event: EventFd | None, backlog: int) -> None:
        self._sub = sub
        self._event = event
        # Valkka holds at most n unread frames; older ones are lapped in the ring anyway.
        self._frames: collections.deque[Frame] = collections.deque(maxlen=backlog)
        self._error: BaseException | None = None
        self._ready = threading.Condition()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name=f"valkka-{sub.name}",
                                        daemon=True)
        self._thread.start()

    def use(self, event: EventFd | None) -> None:
        """Signal through *event* from now on (None: through none)."""
        with self._ready:
            if self._event is not None:
                self._event.clear()
            self._event = event
            if event is not None and (self._frames or self._error):
                event.set()

    def _run(self) -> None:
        while not self._stopping and self._error is None:
            frame = None
            try:
                frame = self._sub.recv(timeout=_STOP_CHECK)
            except Timeout:
                continue
            except Exception as exc:  # handed to the program by its next pull
                self._error = exc
            with self._ready:
                if frame is not None:
                    self._frames.append(frame)
                if self._event is not None:
                    self._event.set()
                self._ready.notify()

    def take(self, timeout: float | None) -> Frame | None:
        """The oldest frame waiting, after at most *timeout* seconds (None: forever)."""
        with self._ready:
            if not self._ready.wait_for(lambda: self._frames or self._error, timeout):
                return None
            if self._error is not None:
                raise self._error
            frame = self._frames.popleft()
            if not self._frames and self._event is not None:
                self._event.clear()  # under the lock: a frame coming now sets it again
            return frame

    def stop(self) -> None:
        self._stopping = True
        self._thread.join()
        self.use(None)


class SharedMemRingBufferRGB:
    """Valkka's API level 1: the client side of an RGB ring, on a framebus stream.

    *name* is a framebus stream of rgb24 frames of *width* x *height*; a pull waits up to
    *mstimeout* ms (0: forever). *slot* (framebus's addition) is what ``RGB24Meta.slot``
    says. Only the client side exists: framebus's server side is ``framebus decode``.
    """

    def __init__(self, name: str, n_cells: int, width: int, height: int, mstimeout: int = 0,
                 is_server: bool = False, *, slot: int = 0, verbose: bool = False) -> None:
        if is_server:
            raise NotImplementedError(
                "framebus.compat.valkka is the client side only; framebus's server side is "
                f"`{SERVER_COMMAND.format(name=name, width=width, height=height)} --fps 1` "
                "(or framebus.Publisher in a program)")
        for what, value, least in (("n_cells", n_cells, 1), ("width", width, 1),
                                   ("height", height, 1), ("mstimeout", mstimeout, 0),
                                   ("slot", slot, 0)):
            if type(value) is not int:
                raise TypeError(f"{what} must be an int, not {type(value).__name__}")
            if value < least:
                raise ValueError(f"{what} must be at least {least}, not {value}")
        self.name, self.n_cells, self.width, self.height = name, n_cells, width, height
        self.mstimeout, self.slot, self.verbose = mstimeout, slot, verbose
        self.n_bytes = width * height * 3
        # Every frame in order, as Valkka's ring gives them, up to n waiting.
        self._sub = Subscriber(name, mode="all", queue=n_cells)
        # Private cells: written here as pictures, handed out flat and read-only.
        self._pictures = [np.zeros((height, width, 3), np.uint8) for _ in range(n_cells)]
        self._buffers = [picture.reshape(-1) for picture in self._pictures]
        for view in self._buffers:
            view.flags.writeable = False
        self._index = -1  # the cell of the last frame pulled, Valkka's own counter
        #: Frames received but overwritten in the ring before they could be copied out.
        self.overwritten = 0
        self._receiver: _Receiver | None = None
        self._event: EventFd | None = None
        self._closed = False
        info = self._sub.info
        if info is not None:  # the broker knows the stream already: say so now, not later
            try:
                _check_geometry(self, info.fmt, tuple(info.shape))
            except GeometryMismatch:
                self._sub.close()
                raise

    def getBufferListPy(self) -> list[np.ndarray]:
        """The n cells: flat, read-only uint8 arrays of width * height * 3 bytes."""
        return self._buffers

    def clientPullPy(self) -> tuple[int, int, int, int, int, int]:
        """``(index, size, width, height, slot, mstimestamp)`` of the next frame, whose
        picture is the first *size* bytes of cell *index*; index -1 if none came within
        mstimeout ms."""
        m = self._pull()
        return (-1, 0, 0, 0, 0, 0) if m is None else (
            self._index, m.size, m.width, m.height, m.slot, m.mstimestamp)

    def clientUseFd(self, event_fd: EventFd | None) -> None:
        """Keep *event_fd* readable while a frame waits for this client (for select).

        From then on a thread of the client's receives its frames (see _Receiver).
        None (framebus's addition) stops signalling through the EventFd it had.
        """
        if self._closed:
            raise ValueError("the client is closed")
        owner = None if event_fd is None else event_fd._client
        if owner is not None and owner is not self:
            raise ValueError(f"{event_fd!r} already serves the client of {owner.name!r}: "
                             "make one EventFd per client")
        if self._event is not None:
            self._event._client = None
        self._event = event_fd
        if event_fd is not None:
            event_fd._client = self
        if self._receiver is not None:
            self._receiver.use(event_fd)
        elif event_fd is not None:
            self._receiver = _Receiver(self._sub, event_fd, self.n_cells)

    @property
    def subscriber(self) -> Subscriber:
        """The framebus Subscriber underneath, for its figures (received, dropped, info)."""
        return self._sub

    def close(self) -> None:
        """Stop receiving; the cells stay readable (Valkka's clients went with their process)."""
        if self._closed:
            return
        self._closed = True
        if self._receiver is not None:
            self._receiver.stop()
        if self._event is not None:
            self._event._client = None
        self._receiver = self._event = None
        self._sub.close()

    def __enter__(self) -> SharedMemRingBufferRGB:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _pull(self) -> RGB24Meta | None:
        """Copy the next whole frame into the next cell and advance to it; None on timeout."""
        if self._closed:
            raise ValueError("the client is closed")
        timeout = self.mstimeout / 1000 if self.mstimeout else None
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            # At least a moment: a frame already queued is still taken after a lapped one.
            left = None if deadline is None else max(0.001, deadline - time.monotonic())
            frame = self._next_frame(left)
            if frame is None:
                return None
            _check_geometry(self, frame.fmt, frame.shape)
            cell = (self._index + 1) % self.n_cells
            # Lapped while it waited, or while copied: never handed out. The next frame (already
            # written, since it is what overwrote this one) goes to the cell instead.
            try:
                if not frame.valid():  # checked first, so as not to touch the cell for nothing
                    raise FrameOverwritten(f"frame {frame.seq} was overwritten while it waited")
                frame.copy(out=self._pictures[cell])
            except FrameOverwritten:
                self.overwritten += 1
                continue
            self._index = cell
            meta = RGB24Meta(self.n_bytes, self.width, self.height, self.slot,
                             frame.timestamp_ns // 1_000_000)
            if self.verbose:
                log.info("%s: frame %d in cell %d, %s", self.name, frame.seq, cell, meta)
            return meta

    def _next_frame(self, timeout: float | None) -> Frame | None:
        try:
            return self._receiver.take(timeout) if self._receiver else self._sub.recv(timeout)
        except Timeout:
            return None


def _check_geometry(client: SharedMemRingBufferRGB, fmt: str, shape: tuple[int, ...]) -> None:
    c = client
    if fmt != "rgb24" or tuple(shape) != (c.height, c.width, 3):
        size = "x".join(map(str, pixfmt.picture_size(fmt, shape))) if len(shape) > 1 else shape
        raise GeometryMismatch(
            f"stream {c.name!r} carries {fmt} frames of {size}, but this client was built "
            f"for rgb24 {c.width}x{c.height}: serve it with "
            f"`{SERVER_COMMAND.format(name=c.name, width=c.width, height=c.height)}`, or "
            "build the client with the stream's size")


def getNumpyShmem(shmem: SharedMemRingBufferRGB, i: int) -> np.ndarray:
    """Valkka's legacy accessor: cell *i* of *shmem*."""
    return shmem.getBufferListPy()[i]


_MANDATORY = object()
#: ShmemRGBClient's keywords, their exact types and defaults, as Valkka checks them.
_CLIENT_PARAMETERS: dict[str, tuple[type, object]] = {
    "name": (str, _MANDATORY), "n_ringbuffer": (int, 10), "width": (int, _MANDATORY),
    "height": (int, _MANDATORY), "mstimeout": (int, 0), "verbose": (bool, False),
    "slot": (int, 0),  # framebus's addition: the number RGB24Meta.slot reports
}


def _checked(definitions: dict[str, tuple[type, object]],
             given: dict[str, object]) -> dict[str, Any]:
    """*given* with defaults filled in, refused the way Valkka refuses (AttributeError)."""
    for key, value in given.items():
        if key not in definitions:
            raise AttributeError(f"Unknown parameter {key}")
        required = definitions[key][0]
        if value.__class__ is not required:  # exact, as Valkka: a bool is no int
            raise AttributeError(f"Wrong type of parameter {key} : should be "
                                 f"{required.__name__}")
    for key, (_, default) in definitions.items():
        if default is _MANDATORY and key not in given:
            raise AttributeError(f"Missing a mandatory parameter {key}")
    return {k: given.get(k, default) for k, (_, default) in definitions.items()}


class ShmemRGBClient:
    """Valkka's API level 2: ``ShmemRGBClient(name=, n_ringbuffer=, width=, height=,
    mstimeout=, verbose=)``, keywords only.

    ``pullFrame()`` gives ``(index, meta)``, or ``(None, None)`` when no frame came within
    mstimeout ms (0: wait forever); the picture is ``shmem_list[index][:meta.size]``, to
    reshape as ``(meta.height, meta.width, 3)``, RGB.
    """

    def __init__(self, **kwargs: object) -> None:
        p = _checked(_CLIENT_PARAMETERS, kwargs)
        self.name: str = p["name"]
        self.n_ringbuffer: int = p["n_ringbuffer"]
        self.width, self.height, self.mstimeout = p["width"], p["height"], p["mstimeout"]
        self.verbose, self.slot = p["verbose"], p["slot"]
        self.core = SharedMemRingBufferRGB(self.name, self.n_ringbuffer, self.width,
                                           self.height, self.mstimeout, False,
                                           slot=self.slot, verbose=self.verbose)
        self.shmem_list = self.core.getBufferListPy()

    def pullFrame(self) -> tuple[int, RGB24Meta] | tuple[None, None]:
        index, size, width, height, slot, mstimestamp = self.core.clientPullPy()
        if index < 0:
            return None, None
        return index, RGB24Meta(size, width, height, slot, mstimestamp)

    pullFrameThread = pullFrame  # as in Valkka: no pull holds other threads up

    def pull(self) -> tuple[int, int] | tuple[None, None]:
        """``(index, size)`` of the next frame, or ``(None, None)`` on timeout."""
        index, size, *_ = self.core.clientPullPy()
        return (None, None) if index < 0 else (index, size)

    def useEventFd(self, event_fd: EventFd) -> None:
        self.core.clientUseFd(event_fd)

    def close(self) -> None:
        self.core.close()

    def __enter__(self) -> ShmemRGBClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
