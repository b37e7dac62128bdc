"""The bus benchmark's systems: a Sender in the producer, a Receiver in each subscriber
(iceoryx2's in bench/bus/iceoryx.py)."""

from __future__ import annotations

import struct
import time
from collections.abc import Callable
from typing import Protocol

import numpy as np
import zmq

import framebus
from bench import common
from bench.bus.cell import ZMQ_HWM, Cell
from bench.common import FramebusSender, ImagezmqSender, Sender

# -- the three systems: a Sender (in the producer) and a Receiver (in each subscriber) --------
#
# Sender.send gets the producer's clock taken just before the call. Receiver.recv returns
# (seq, t_write, t_start, t_recv): t_write is the system's own "frame written" stamp, t_start
# the producer's clock before send, t_recv the subscriber's clock once it holds the array.


class Receiver(Protocol):
    def recv(self, timeout: float) -> tuple[int, int, int, int] | None: ...

    def stats(self) -> dict: ...

    def close(self) -> None: ...


class FramebusReceiver:
    """framebus.Subscriber in its default "latest" mode; the array is a view of the slot."""

    def __init__(self, cell: Cell, address: str) -> None:
        self.sub = framebus.Subscriber(address, broker=cell.broker)
        self.held: np.ndarray | None = None
        self.overwritten = 0  # frames whose slot was already reused once we held them

    def recv(self, timeout: float) -> tuple[int, int, int, int] | None:
        try:
            frame = self.sub.recv(timeout=timeout)
        except framebus.Timeout:
            return None
        self.held = frame.array
        t_recv = time.time_ns()
        if not frame.valid():
            self.overwritten += 1
        return frame.seq, frame.timestamp_ns, frame.pts, t_recv

    def stats(self) -> dict:
        return {"dropped": self.sub.dropped, "received": self.sub.received,
                "rejected": self.sub.rejected, "overwritten": self.overwritten}

    def close(self) -> None:
        self.held = None  # let the ring's mapping go
        self.sub.close()


HEADER = struct.Struct("<qq")  # seq, producer clock (ns)


class ZmqSender:
    """Raw pyzmq PUB: [header, pixels], the pixels sent zero-copy from the numpy buffer."""

    def __init__(self, cell: Cell) -> None:
        self.context = zmq.Context()
        self.socket = self.context.socket(zmq.PUB)
        self.socket.linger = 0
        self.socket.sndhwm = ZMQ_HWM
        self.socket.bind("tcp://127.0.0.1:*")  # a free port, chosen by the kernel
        self.address = self.socket.last_endpoint.decode()

    def send(self, image: np.ndarray, seq: int, t_start: int) -> None:
        self.socket.send_multipart([HEADER.pack(seq, t_start), image], copy=False)

    def close(self) -> None:
        self.socket.close(linger=0)
        self.context.term()


class ZmqReceiver:
    """Raw pyzmq SUB: receives without copying and wraps the message with np.frombuffer."""

    def __init__(self, cell: Cell, address: str) -> None:
        self.shape = cell.shape
        self.context = zmq.Context()
        self.socket = self.context.socket(zmq.SUB)
        self.socket.linger = 0
        self.socket.rcvhwm = ZMQ_HWM
        self.socket.subscribe(b"")
        self.socket.connect(address)
        self.held: np.ndarray | None = None

    def recv(self, timeout: float) -> tuple[int, int, int, int] | None:
        if not self.socket.poll(int(timeout * 1000)):
            return None
        header, pixels = self.socket.recv_multipart(copy=False)
        self.held = np.frombuffer(pixels, np.uint8).reshape(self.shape)
        t_recv = time.time_ns()
        seq, t_start = HEADER.unpack(header.bytes)
        return seq, t_start, t_start, t_recv

    def stats(self) -> dict:
        return {}

    def close(self) -> None:
        self.held = None
        self.socket.close(linger=0)
        self.context.term()


class ImagezmqReceiver(common.ImagezmqReceiver):
    """imagezmq.ImageHub in PUB/SUB mode, its receive queue as shipped (1000 frames)."""

    def __init__(self, cell: Cell, address: str) -> None:
        super().__init__(address)

    def recv(self, timeout: float) -> tuple[int, int, int, int] | None:
        sample = super().recv(timeout)
        if sample is None:
            return None
        seq, t_start, t_recv = sample
        return seq, t_start, t_start, t_recv


def _iceoryx_sender(cell: Cell) -> Sender:
    from bench.bus.iceoryx import IceoryxSender  # iceoryx2 only where it runs

    return IceoryxSender(cell)


def _iceoryx_receiver(cell: Cell, address: str) -> Receiver:
    from bench.bus.iceoryx import IceoryxReceiver

    return IceoryxReceiver(cell, address)


SENDERS: dict[str, Callable[[Cell], Sender]] = {
    "framebus": FramebusSender, "iceoryx2": _iceoryx_sender, "zmq": ZmqSender,
    "imagezmq": ImagezmqSender}
RECEIVERS: dict[str, Callable[[Cell, str], Receiver]] = {
    "framebus": FramebusReceiver, "iceoryx2": _iceoryx_receiver, "zmq": ZmqReceiver,
    "imagezmq": ImagezmqReceiver}
