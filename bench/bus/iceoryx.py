"""iceoryx2's Python binding as a peer of the bus benchmark (issue 11 §1).

A publish-subscribe service whose payload is one whole frame (with its seq and the
producer's clocks) written in place into a loaned sample, and an event service beside it:
the producer notifies after each send, the subscriber sleeps on its Listener. Each
subscriber keeps only the newest sample (buffer of 1, safe overflow), as a framebus
subscriber in mode "latest" does. iceoryx2 is imported only when the system runs, so the
benchmark still runs where it is not installed (`pip install -e .[bench]`).
"""

from __future__ import annotations

import ctypes
import time

import numpy as np

from bench.bus.cell import SHM_PREFIX, Cell


def available() -> str | None:
    """None if iceoryx2 can run here, else why not."""
    try:
        import iceoryx2  # noqa: F401
    except ImportError as exc:
        return f"iceoryx2 is not installed ({exc}): pip install -e '.[bench]'"
    return None


def _frame_type(cell: Cell) -> type[ctypes.Structure]:
    class Frame(ctypes.Structure):
        _fields_ = [("seq", ctypes.c_int64), ("t_write", ctypes.c_int64),
                    ("t_start", ctypes.c_int64),
                    ("pixels", ctypes.c_uint8 * cell.frame_bytes)]
    Frame.__name__ = f"Frame{cell.width}x{cell.height}"
    Frame.__qualname__ = Frame.__name__
    return Frame


def _services(cell: Cell):
    import iceoryx2 as iox2

    iox2.set_log_level_from_env_or(iox2.LogLevel.Error)
    node = iox2.NodeBuilder.new().create(iox2.ServiceType.Ipc)
    name = iox2.ServiceName.new(f"{SHM_PREFIX}/{cell.stream}")
    pubsub = (node.service_builder(name).publish_subscribe(_frame_type(cell))
              .max_subscribers(max(cell.subs, 1)).max_publishers(1)
              .subscriber_max_buffer_size(1).subscriber_max_borrowed_samples(3)
              .history_size(0).enable_safe_overflow(True).open_or_create())
    event = node.service_builder(name).event().open_or_create()
    return iox2, node, pubsub, event


class IceoryxSender:
    """loan_uninit, np.copyto into the sample, the clock after the copy, send, notify."""

    def __init__(self, cell: Cell) -> None:
        self.iox2, self.node, pubsub, event = _services(cell)
        self.shape = cell.shape
        self.publisher = pubsub.publisher_builder().create()
        self.notifier = event.notifier_builder().create()
        self.address = cell.stream

    def send(self, image: np.ndarray, seq: int, t_start: int) -> None:
        sample = self.publisher.loan_uninit()
        frame = sample.payload().contents
        np.copyto(np.ctypeslib.as_array(frame.pixels).reshape(self.shape), image)
        frame.seq, frame.t_start = seq, t_start
        frame.t_write = time.time_ns()  # as framebus's timestamp: after the copy
        sample.assume_init().send()
        self.notifier.notify()

    def close(self) -> None:
        self.publisher.delete()
        self.notifier.delete()


class IceoryxReceiver:
    """Sleeps on the event service's Listener, then takes the newest sample; the array is a
    view of the sample in shared memory, held until the next one."""

    def __init__(self, cell: Cell, address: str) -> None:
        self.iox2, self.node, pubsub, event = _services(cell)
        self.shape = cell.shape
        self.subscriber = pubsub.subscriber_builder().create()
        self.listener = event.listener_builder().create()
        self.sample = None
        self.held: np.ndarray | None = None
        self.received = 0

    def recv(self, timeout: float) -> tuple[int, int, int, int] | None:
        sample = self._newest()
        if sample is None:
            self.listener.timed_wait(self.iox2.Duration.from_secs_f64(timeout))
            sample = self._newest()
            if sample is None:
                return None
        self._release()
        self.sample = sample
        frame = sample.payload().contents
        self.held = np.ctypeslib.as_array(frame.pixels).reshape(self.shape)
        t_recv = time.time_ns()
        self.received += 1
        return frame.seq, frame.t_write, frame.t_start, t_recv

    def _newest(self):
        newest = None
        while (sample := self.subscriber.receive()) is not None:
            if newest is not None:
                newest.delete()
            newest = sample
        return newest

    def _release(self) -> None:
        self.held = None
        if self.sample is not None:
            self.sample.delete()
            self.sample = None

    def stats(self) -> dict:
        return {"received": self.received}

    def close(self) -> None:
        self._release()
        self.subscriber.delete()
        self.listener.delete()
