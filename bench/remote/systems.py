"""The remote benchmark's systems: a Sender in the producer, a Receiver in each consumer."""

from __future__ import annotations

import collections
import json
import logging
import threading
import time
from typing import Protocol

import numpy as np

import framebus
from bench.common import FramebusSender, ImagezmqReceiver, ImagezmqSender, Sender, free_port
from bench.remote.cell import (
    IMAGEZMQ_RCVHWM,
    JPEG_QUALITY,
    NETGEAR_TIMEOUT,
    STAMP,
    ZENOH_KEY,
    ZENOH_QUEUE,
    Cell,
    Consumer,
)

# -- the systems: a Sender in the producer, a Receiver in each consumer -----------------------
#
# Sender.send(image, seq, t_start) gets the producer's clock taken just before the call.
# Receiver.recv(timeout) returns (seq, t_write, t_recv): t_write is the producer's clock as the
# system carries it, t_recv the consumer's once it holds the array; None on timeout.


class Receiver(Protocol):
    def recv(self, timeout: float) -> tuple[int, int, int] | None: ...

    def stats(self) -> dict: ...

    def close(self) -> None: ...


class FramebusReceiver:
    """framebus.Subscriber over the relay (transport="tcp") or from the ring (transport="shm")."""

    def __init__(self, cell: Cell, consumer: Consumer) -> None:
        codec = "jpeg" if cell.system == "framebus-jpeg" else "raw"
        self.sub = framebus.Subscriber(cell.stream, broker=cell.broker,
                                       transport=consumer.transport, codec=codec,
                                       quality=JPEG_QUALITY)
        self.held: np.ndarray | None = None

    def recv(self, timeout: float) -> tuple[int, int, int] | None:
        try:
            frame = self.sub.recv(timeout=timeout)
        except framebus.Timeout:
            return None
        self.held = frame.array  # remote: the frame's own pixels, decoded if JPEG
        return frame.seq, frame.timestamp_ns, time.time_ns()

    def stats(self) -> dict:
        return {"dropped": self.sub.dropped, "received": self.sub.received,
                "rejected": self.sub.rejected, "path": self.sub.path}

    def close(self) -> None:
        self.held = None
        self.sub.close()


def _quiet_vidgear() -> None:
    # NetGear logs at DEBUG whatever `logging=False` says, and an ERROR with a traceback
    # when simplejpeg is missing (it then sends raw frames, which is what we measure).
    for name in ("NetGear", "Helper"):
        logging.getLogger(name).setLevel(logging.CRITICAL + 1)


class NetgearSender:
    """vidgear NetGear server, pattern=2 (PUB/SUB), multi-client: it connects to each consumer.

    NetGear sends zero-copy, so each frame gets a buffer of its own (a copy of the image, as
    framebus's publish makes one) with seq and clock written into its first 16 bytes.
    """

    def __init__(self, cell: Cell) -> None:
        from vidgear.gears import NetGear

        _quiet_vidgear()
        self.gear = NetGear(address="127.0.0.1", port=[str(p) for p in cell.ports],
                            protocol="tcp", pattern=2, logging=False, multiclient_mode=True,
                            jpeg_compression=False)  # raw, even with simplejpeg installed
        self.address = ",".join(map(str, cell.ports))

    def send(self, image: np.ndarray, seq: int, t_start: int) -> None:
        frame = image.copy()
        frame.reshape(-1)[:STAMP.size] = np.frombuffer(STAMP.pack(seq, t_start), np.uint8)
        self.gear.send(frame)

    def close(self) -> None:
        self.gear.close()


class NetgearReceiver:
    """vidgear NetGear client, pattern=2, multi-client: binds its own port, receives in a thread."""

    def __init__(self, cell: Cell, port: str) -> None:
        from vidgear.gears import NetGear

        _quiet_vidgear()
        self.gear = NetGear(address="127.0.0.1", port=port, protocol="tcp", pattern=2,
                            receive_mode=True, logging=False, multiclient_mode=True,
                            subscriber_timeout=NETGEAR_TIMEOUT)
        self.held: np.ndarray | None = None

    def recv(self, timeout: float) -> tuple[int, int, int] | None:
        # No timeout here: recv() spins until a frame comes (the producer's tail keeps them
        # coming) or the receive thread gives up after NETGEAR_TIMEOUT s of silence.
        frame = self.gear.recv()
        if frame is None:
            return None
        self.held = frame
        t_recv = time.time_ns()
        seq, t_start = STAMP.unpack(frame.reshape(-1)[:STAMP.size].tobytes())
        return seq, t_start, t_recv

    def stats(self) -> dict:
        return {}

    def close(self) -> None:
        # NetGear.close() closes the socket while its receive thread may be inside recv on
        # it, which aborts the process in libzmq (signaler.cpp assertion). Let the thread see
        # its stop flag after its next message first (name-mangled private attributes).
        gear = self.gear
        gear._NetGear__terminate = True
        thread = gear._NetGear__thread
        if thread is not None:
            thread.join(NETGEAR_TIMEOUT + 1)
        if thread is None or not thread.is_alive():
            gear.close()


def _zenoh_config(listen: str | None = None, connect: str | None = None):
    """A Zenoh peer on loopback TCP that finds its peer by endpoint, not by scouting.

    Its shared-memory transport is off: by default two peers on one host pass every message
    over 3 KB through shared memory, which is not the network path this bench measures (and
    leaves its pools' files in /dev/shm)."""
    import zenoh

    config = zenoh.Config()
    config.insert_json5("mode", '"peer"')
    config.insert_json5("transport/shared_memory/enabled", "false")
    config.insert_json5("scouting/multicast/enabled", "false")
    config.insert_json5("listen/endpoints", json.dumps([listen] if listen else []))
    config.insert_json5("connect/endpoints", json.dumps([connect] if connect else []))
    return config


class ZenohSender:
    """eclipse-zenoh: a peer that listens on loopback TCP and puts each frame on a key (its
    bytes: the Python binding takes bytes, not a buffer), seq and clock in the attachment."""

    def __init__(self, cell: Cell) -> None:
        import zenoh

        self.address = f"tcp/127.0.0.1:{free_port()}"
        self.session = zenoh.open(_zenoh_config(listen=self.address))
        self.publisher = self.session.declare_publisher(ZENOH_KEY)

    def send(self, image: np.ndarray, seq: int, t_start: int) -> None:
        self.publisher.put(image.tobytes(), attachment=STAMP.pack(seq, t_start))

    def close(self) -> None:
        self.session.close()


class ZenohReceiver:
    """eclipse-zenoh: a peer connected to the sender's, subscribed with a callback into a
    queue that keeps the newest ZENOH_QUEUE samples (as zenoh's RingChannel does, which has
    no receive with a timeout)."""

    def __init__(self, address: str) -> None:
        import zenoh

        self._queue: collections.deque = collections.deque(maxlen=ZENOH_QUEUE)
        self._ready = threading.Condition()
        self.session = zenoh.open(_zenoh_config(connect=address))
        self.subscriber = self.session.declare_subscriber(ZENOH_KEY, self._on_sample)
        self.held: np.ndarray | None = None

    def _on_sample(self, sample) -> None:
        with self._ready:
            self._queue.append(sample)
            self._ready.notify()

    def recv(self, timeout: float) -> tuple[int, int, int] | None:
        with self._ready:
            if not self._ready.wait_for(lambda: self._queue, timeout):
                return None
            sample = self._queue.popleft()
        self.held = np.frombuffer(sample.payload.to_bytes(), np.uint8)
        t_recv = time.time_ns()
        seq, t_start = STAMP.unpack(sample.attachment.to_bytes())
        return seq, t_start, t_recv

    def stats(self) -> dict:
        return {}

    def close(self) -> None:
        self.subscriber.undeclare()
        self.session.close()


def make_sender(cell: Cell) -> Sender:
    if cell.framebus:
        return FramebusSender(cell)
    senders = {"imagezmq": ImagezmqSender, "netgear": NetgearSender, "zenoh": ZenohSender}
    return senders[cell.system](cell)


def make_receiver(cell: Cell, consumer: Consumer, address: str) -> Receiver:
    if cell.framebus:
        return FramebusReceiver(cell, consumer)
    if cell.system == "imagezmq":
        return ImagezmqReceiver(address, rcvhwm=IMAGEZMQ_RCVHWM)
    if cell.system == "zenoh":
        return ZenohReceiver(address)
    return NetgearReceiver(cell, address)
