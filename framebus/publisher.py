"""Publisher: the producer's side of a stream.

A Publisher owns a ring in shared memory and a ZeroMQ PUB socket. Each frame
is written into the next slot in place, then local readers that gave it an eventfd are
woken (framebus/shm/wake.py) and every subscriber is sent a descriptor.
A background thread registers the stream with the broker and heartbeats;
the broker being away never blocks the frame path.
"""

from __future__ import annotations

import logging
import time
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import zmq
from zmq.utils.monitor import recv_monitor_message

from . import config, pixfmt
from .discovery import BrokerClient
from .errors import FramebusError
from .names import topic, validate_stream_name
from .protocol.descriptor import Descriptor
from .shm import Geometry, RingWriter
from .shm.wake import WakeServer
from .support.rates import RateMeter
from .support.registration import StreamRegistration

log = logging.getLogger(__name__)


def default_fmt(shape: tuple[int, ...], dtype: np.dtype) -> str:
    """The pixel format name framebus assumes for an array of this shape."""
    if np.dtype(dtype) == np.uint8:
        if len(shape) == 2 or (len(shape) == 3 and shape[2] == 1):
            return "gray"
        if len(shape) == 3 and shape[2] == 3:
            return "bgr24"
        if len(shape) == 3 and shape[2] == 4:
            return "bgra"
    return "raw"


def _geometry(shape, dtype, fmt: str | None) -> Geometry:
    """The geometry of a ring, refusing a shape that cannot hold a picture in *fmt*."""
    dtype = np.dtype(dtype)
    fmt = fmt or default_fmt(tuple(shape), dtype)
    pixfmt.check_shape(fmt, tuple(shape))
    return Geometry.of(shape, dtype, fmt)


class Publisher:
    """Publish frames of one stream.

    >>> pub = Publisher("cam1", shape=(1080, 1920, 3), fmt="bgr24")
    >>> with pub.frame(pts=pts) as buf:   # fill the slot in place
    ...     decoder.decode_into(buf)
    >>> pub.publish(image)                 # or copy a finished image in
    """

    def __init__(self, name: str, shape: tuple[int, ...], dtype: str | np.dtype = "uint8",
                 fmt: str | None = None, slots: int = 8, *, broker: str | None = None,
                 time_base: Fraction | None = None, endpoint: str | None = None,
                 context: zmq.Context | None = None) -> None:
        self._closed = True  # until the constructor is through: __del__ has nothing to undo
        self.name = validate_stream_name(name)
        self._wake: WakeServer | None = None
        self._time_base = time_base
        self._segment = config.segment_name(name)
        geometry = _geometry(shape, dtype, fmt)
        self._ring = RingWriter.create(self._segment, geometry, slots)
        self.seq = 0
        #: Extra figures the heartbeat carries to the broker (a decoder's counters, say).
        self.figures: dict[str, int | float] = {}
        self._rate = RateMeter(window=5.0)  # long enough for a stream at 1 fps
        #: pyzmq's own rule: a context given is the caller's to end, one made here is ours.
        self._own_context = context is None
        self._context = zmq.Context() if context is None else context
        self._topic = topic(self.name)
        self._socket = self._context.socket(zmq.PUB)
        self._socket.linger = 0
        self._socket.sndhwm = 1000
        self._socket_file: Path | None = None  # the ipc socket file, once bound
        self._connections = _Connections(self._socket)
        self._registration = _Registration(self, BrokerClient(broker, context=self._context,
                                                              timeout=0.5))
        try:
            self._open_transport(endpoint)
        except BaseException:
            # Whatever stops the constructor, a name clash, a bind error or a signal,
            # must not leave the ring behind.
            self._close_transport()
            raise
        self._closed = False

    def _open_transport(self, endpoint: str | None) -> None:
        """Bind the descriptor socket, then register and start the heartbeat thread."""
        self.endpoint = endpoint or config.descriptor_endpoint(self.name)
        try:
            self._socket.bind(self.endpoint)
        except zmq.ZMQError as exc:
            raise FramebusError(f"cannot publish descriptors on {self.endpoint}: {exc}") from None
        self._socket_file = config.ipc_path(self.endpoint)  # ours to remove, now that it is bound
        if self._socket_file is not None:
            config.share(self._socket_file, 0o660)  # readable by $FRAMEBUS_GROUP, if set
        try:
            self._wake = WakeServer(self.name, self._ring.token)
        except OSError as exc:  # local readers fall back on the descriptors
            log.warning("%s: no wake-up for local readers: %s", self.name, exc)
        self._registration.first_attempt()  # StreamInUse here fails the constructor
        self._registration.start()

    # -- the frame path ----------------------------------------------------------

    def frame(self, pts: int | None = None, timestamp_ns: int | None = None) -> _SlotWrite:
        """A context manager giving the next slot as a writable array.

        Fill it in place; the frame is published when the block ends, and
        not at all if the block raises.
        """
        return _SlotWrite(self, pts, timestamp_ns)

    def publish(self, image: np.ndarray, pts: int | None = None,
                timestamp_ns: int | None = None) -> int:
        """Copy *image* into the next slot and publish it; returns its seq."""
        with self.frame(pts, timestamp_ns) as buf:
            np.copyto(buf, image, casting="no")
        return self.seq - 1

    def _commit(self, pts: int | None, timestamp_ns: int | None) -> None:
        seq, ring = self.seq, self._ring
        stamp = time.time_ns() if timestamp_ns is None else timestamp_ns
        slot = ring.commit(seq, pts, stamp)
        if self._wake is not None:
            self._wake.wake()  # first: a local reader needs nothing more than the ring
        g = ring.geometry
        desc = Descriptor(stream=self.name, generation=ring.generation, token=ring.token,
                          seq=seq, slot=slot, pts=pts, time_base=self._time_base,
                          timestamp_ns=stamp, shape=g.shape, dtype=g.dtype.str, fmt=g.fmt)
        self._socket.send(self._topic + desc.pack())
        self.seq = seq + 1
        self._rate.add()

    # -- geometry --------------------------------------------------------------

    @property
    def time_base(self) -> Fraction | None:
        return self._time_base

    @time_base.setter
    def time_base(self, value: Fraction | None) -> None:
        """A new time base: readers woken by the ring come back for a descriptor that has
        it (they take what a frame is from the last descriptor they read)."""
        if value != self._time_base:
            self._time_base = value
            if self._wake is not None:
                self._wake.renew(self._ring.token)

    @property
    def geometry(self) -> Geometry:
        return self._ring.geometry

    @property
    def generation(self) -> int:
        return self._ring.generation

    @property
    def shape(self) -> tuple[int, ...]:
        return self._ring.geometry.shape

    def reconfigure(self, shape: tuple[int, ...], dtype: str | np.dtype | None = None,
                    fmt: str | None = None) -> None:
        """Change the frame geometry: a new ring generation replaces the old.

        Subscribers notice from the next descriptor and map the new ring by
        themselves; frames they still hold from the old one stay readable.
        """
        geometry = _geometry(shape, self.geometry.dtype if dtype is None else dtype, fmt)
        old = self._ring
        old.close(unlink=True)
        self._ring = RingWriter.create(self._segment, geometry, old.slot_count, old.generation + 1)
        if self._wake is not None:
            self._wake.renew(self._ring.token)  # woken readers come back for the new ring
        self._registration.changed()
        log.info("%s: generation %d, %s %s", self.name, self._ring.generation, geometry.shape,
                 geometry.fmt)

    # -- lifetime ----------------------------------------------------------------

    def close(self) -> None:
        """Unregister, stop publishing and unlink the ring. Idempotent."""
        if getattr(self, "_closed", True):
            return
        self._closed = True
        self._close_transport()

    @property
    def subscribers(self) -> int:
        """Subscribers connected to the descriptors, as of the last heartbeat."""
        return self._connections.count

    def _close_transport(self) -> None:
        """Close what is open, whatever got opened: also undoes a constructor cut short.

        The ring goes whatever happens on the way: a signal that lands while the broker is
        told goodbye (a SystemExit from a SIGTERM handler, say) must not leave it behind.
        """
        try:
            self._registration.stop()  # unregisters, and closes the broker client
        finally:
            self._connections.close()
            self._socket.close(linger=0)
            if self._own_context:
                # Every socket of ours is closed: term() cannot hang (as it would in a
                # garbage-collected context whose sockets are still open).
                self._context.destroy(linger=0)
            if self._socket_file is not None:
                self._socket_file.unlink(missing_ok=True)
            try:
                if self._wake is not None:
                    self._wake.close()
            finally:
                self._ring.close(unlink=True)

    def __enter__(self) -> Publisher:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass

    def __repr__(self) -> str:
        g = self.geometry
        return f"<Publisher {self.name} {g.shape} {g.fmt} seq={self.seq}>"


class _SlotWrite:
    """``with pub.frame() as buf``: begin the slot on entry, commit on clean exit."""

    __slots__ = ("_pub", "_pts", "_timestamp_ns")

    def __init__(self, pub: Publisher, pts: int | None, timestamp_ns: int | None) -> None:
        self._pub, self._pts, self._timestamp_ns = pub, pts, timestamp_ns

    def __enter__(self) -> np.ndarray:
        return self._pub._ring.begin(self._pub.seq)

    def __exit__(self, exc_type, exc, tb) -> None:
        # On error the slot stays marked "being written": readers never take it.
        if exc_type is None:
            self._pub._commit(self._pts, self._timestamp_ns)


class _Connections:
    """Counts the subscribers connected to the descriptor socket, from its monitor events.

    Only the heartbeat thread calls update(): the monitor socket is its alone.
    """

    def __init__(self, socket: zmq.Socket) -> None:
        self._socket = socket
        self._monitor = socket.get_monitor_socket(zmq.EVENT_ACCEPTED | zmq.EVENT_DISCONNECTED)
        self.count = 0

    def update(self) -> int:
        while self._monitor.poll(0):
            event = recv_monitor_message(self._monitor)["event"]
            self.count = max(0, self.count + (1 if event == zmq.EVENT_ACCEPTED else -1))
        return self.count

    def close(self) -> None:
        self._socket.disable_monitor()
        self._monitor.close(linger=0)


class _Registration(StreamRegistration):
    """Keeps the broker told of a Publisher's stream (framebus/support/registration.py)."""

    def __init__(self, pub: Publisher, client: BrokerClient) -> None:
        super().__init__(client, pub.name)
        self._pub = pub

    def token(self) -> bytes:
        return self._pub._ring.token

    def describe(self) -> dict[str, Any]:
        ring = self._pub._ring
        g = ring.geometry
        return {"host": config.host_id(), "pid": ring.header.writer_pid, "segment": ring.name,
                "endpoint": self._pub.endpoint, "generation": ring.generation,
                "shape": list(g.shape), "dtype": g.dtype.str, "fmt": g.fmt,
                "slots": ring.slot_count}

    def report(self) -> dict[str, Any]:
        pub = self._pub
        return {"subscribers": pub._connections.update(), "figures": dict(pub.figures),
                "frames": pub._rate.total, "fps": round(pub._rate.rate, 2),
                "age": pub._rate.age}
