"""Publisher: the producer's side of a stream.

A Publisher owns a ring in shared memory and a ZeroMQ PUB socket. Each frame
is written into the next slot in place, then announced with a descriptor.
A background thread registers the stream with the broker and heartbeats;
the broker being away never blocks the frame path.
"""

from __future__ import annotations

import logging
import threading
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import zmq
from zmq.utils.monitor import recv_monitor_message

from . import config, pixfmt
from .discovery import BrokerClient
from .errors import BrokerUnavailable, FramebusError, StreamInUse, StreamNotFound
from .names import topic, validate_stream_name
from .protocol.descriptor import Descriptor
from .shm import Geometry, RingWriter

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
                 time_base: Fraction | None = None, endpoint: str | None = None) -> None:
        self.name = validate_stream_name(name)
        self.time_base = time_base
        self._segment = config.segment_name(name)
        geometry = _geometry(shape, dtype, fmt)
        self._ring = RingWriter.create(self._segment, geometry, slots)
        self.seq = 0
        #: Extra figures the heartbeat carries to the broker (a decoder's counters, say).
        self.figures: dict[str, int | float] = {}
        self._stats = _Figures()
        try:
            self._open_transport(endpoint, broker)
        except BaseException:
            # Whatever stops the constructor, a name clash, a bind error or a signal,
            # must not leave the ring behind.
            self._close_transport()
            raise
        self._closed = False

    def _open_transport(self, endpoint: str | None, broker: str | None) -> None:
        """The descriptor socket, then the broker registration and its heartbeat thread."""
        self._topic = topic(self.name)
        self._context = zmq.Context()
        self._socket = self._context.socket(zmq.PUB)
        self._socket.linger = 0
        self._socket.sndhwm = 1000
        self.endpoint = endpoint or config.descriptor_endpoint(self.name)
        self._socket_file = _ipc_path(self.endpoint)
        try:
            self._socket.bind(self.endpoint)
        except zmq.ZMQError as exc:
            raise FramebusError(f"cannot publish descriptors on {self.endpoint}: {exc}") from None
        self._connections = _Connections(self._socket)
        self._registration = _Registration(self, BrokerClient(broker, context=self._context,
                                                              timeout=0.5))
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
        slot = ring.commit(seq, pts if pts is not None else 0, stamp)
        g = ring.geometry
        desc = Descriptor(self.name, ring.generation, ring.token, seq, slot, pts,
                          self.time_base, stamp, g.shape, g.dtype.str, g.fmt)
        self._socket.send(self._topic + desc.pack())
        self.seq = seq + 1
        self._stats.count()

    # -- geometry --------------------------------------------------------------

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
        self._registration.changed()
        log.info("%s: generation %d, %s %s", self.name, self._ring.generation, geometry.shape,
                 geometry.fmt)

    # -- lifetime ----------------------------------------------------------------

    def close(self) -> None:
        """Unregister, stop publishing and unlink the ring. Idempotent."""
        if getattr(self, "_closed", True):
            return
        self._closed = True
        self._registration.stop()
        self._close_transport()

    @property
    def subscribers(self) -> int:
        """Subscribers connected to the descriptors, as of the last heartbeat."""
        return self._connections.count

    def _close_transport(self) -> None:
        """Close what is open, whatever got opened: also undoes a constructor cut short."""
        if hasattr(self, "_connections"):
            self._connections.close()
        if hasattr(self, "_socket"):
            self._socket.close(linger=0)
            self._context.destroy(linger=0)  # and the broker client's socket, if still open
        if getattr(self, "_socket_file", None) and hasattr(self, "_connections"):
            self._socket_file.unlink(missing_ok=True)  # ours only once we had bound it
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


class _Figures:
    """Frame counts and rate, written by the frame path, read by the heartbeat."""

    def __init__(self) -> None:
        self.frames = 0
        self.last_frame = None  # monotonic time
        self._mark = (time.monotonic(), 0)

    def count(self) -> None:
        self.frames += 1
        self.last_frame = time.monotonic()

    def sample(self) -> dict:
        now, frames = time.monotonic(), self.frames
        then, before = self._mark
        self._mark = (now, frames)
        fps = (frames - before) / (now - then) if now > then else 0.0
        age = None if self.last_frame is None else now - self.last_frame
        return {"frames": frames, "fps": round(fps, 2), "age": age}


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


class _Registration(threading.Thread):
    """Keeps the broker told: registers, heartbeats, re-registers after its restarts."""

    def __init__(self, pub: Publisher, client: BrokerClient) -> None:
        super().__init__(name=f"framebus-heartbeat-{pub.name}", daemon=True)
        self._pub = pub
        self._client = client
        self._stopping = threading.Event()
        self._registered = False
        self._reachable = True

    def first_attempt(self) -> None:
        """Register now, so a name clash fails the constructor; a missing broker does not."""
        try:
            self._register()
        except BrokerUnavailable:
            self._reachable = False
            log.warning("%s: broker %s not reachable; publishing anyway and retrying",
                        self._pub.name, self._client.address)

    def changed(self) -> None:
        self._registered = False

    def run(self) -> None:
        while not self._stopping.wait(config.HEARTBEAT_INTERVAL):
            try:
                self._beat()
            except BrokerUnavailable:
                if self._reachable:
                    log.warning("%s: broker %s stopped answering; retrying", self._pub.name,
                                self._client.address)
                self._reachable = False
            except StreamInUse as exc:
                log.error("%s: broker refuses this producer: %s", self._pub.name, exc)
            except FramebusError as exc:
                log.error("%s: broker error: %s", self._pub.name, exc)

    def stop(self) -> None:
        self._stopping.set()
        if self.is_alive():
            self.join()
        if self._registered:
            try:
                self._client.request("unregister", timeout=0.2, name=self._pub.name,
                                     token=self._pub._ring.token)
            except FramebusError:
                pass
        self._client.close()

    def _beat(self) -> None:
        if not self._registered:
            self._register()
            return
        try:
            pub = self._pub
            self._client.request("heartbeat", name=pub.name, token=pub._ring.token,
                                 subscribers=pub._connections.update(), figures=dict(pub.figures),
                                 **pub._stats.sample())
        except StreamNotFound:
            log.info("%s: broker forgot this stream (restarted?); registering again", self._pub.name)
            self._register()
        if not self._reachable:
            log.info("%s: broker reachable again", self._pub.name)
            self._reachable = True

    def _register(self) -> None:
        pub, ring = self._pub, self._pub._ring
        g = ring.geometry
        self._client.request(
            "register", name=pub.name, host=config.host_id(), pid=ring.header.writer_pid,
            segment=ring.name, endpoint=pub.endpoint, token=ring.token,
            generation=ring.generation, shape=list(g.shape), dtype=g.dtype.str, fmt=g.fmt,
            slots=ring.slot_count)
        self._registered = True
        if not self._reachable:
            log.info("%s: registered with broker %s", pub.name, self._client.address)
            self._reachable = True


def _ipc_path(endpoint: str) -> Path | None:
    return Path(endpoint[len("ipc://"):]) if endpoint.startswith("ipc://") else None
