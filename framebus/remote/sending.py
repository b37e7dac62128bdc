"""Raw frames sent straight from their ring slot, and the check that follows each.

The relay does not copy a raw frame out of the ring: ZeroMQ sends the slot itself
(``copy=False``). The writer may reuse the slot while the bytes are on their way, so the
frame is only handed out by the subscriber once the relay has confirmed it: when ZeroMQ
lets go of the slot's buffer (libzmq has written every byte to the kernel), the relay
reads the slot's stamp again, and says ``[b"check", b"\\x01"]`` if the slot still holds
that frame (the writer sets the stamp odd before it touches a pixel, so an unchanged even
stamp means no pixel changed while it was sent) or ``b"\\x00"`` if it was reused. A
subscriber discards a frame whose check fails; the relay counts that credit as unspent.

ZeroMQ lets go of the buffer in its own threads (pyzmq's garbage collector thread drops
its reference once libzmq frees the message); a finalizer on an array object given to
ZeroMQ alone notes it, and an eventfd wakes the relay's loop to send the check.
"""

from __future__ import annotations

import collections
import logging
import os
import weakref
from dataclasses import dataclass

import numpy as np
import zmq

from ..frame import Frame
from ..protocol import relay as wire

log = logging.getLogger("framebus.remote.relay")


@dataclass(eq=False)
class Ticket:
    """One frame sent from its slot to one subscriber, waiting for its check."""

    key: tuple[int, bytes]  # the subscriber's (socket index, identity)
    frame: Frame  # the relay's own Frame of the slot: its valid() is the check

    def whole(self) -> bool:
        """Whether the slot still holds the frame: then every byte sent was the frame's."""
        try:
            return self.frame.valid()
        except Exception:  # the feed closed the ring meanwhile: say torn, to be safe
            return False


class SlotSends:
    """Sends frames from their slots and tells, through ``fileno()``, which are out."""

    def __init__(self) -> None:
        self._fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self._out: collections.deque[Ticket] = collections.deque()

    def fileno(self) -> int:
        """Readable once a frame sent is out of ZeroMQ's hands: call ``finished()``."""
        return self._fd

    def send(self, socket: zmq.Socket, head: list[bytes], pixels: np.ndarray,
             ticket: Ticket) -> None:
        """Send ``head + [the slot's pixels]`` without a copy; *ticket* finishes after.

        Raises what ``send_multipart`` raises (then the ticket finishes all the same)."""
        lent = pixels.view()  # an object only ZeroMQ holds, so its end is ZeroMQ's
        weakref.finalize(lent, self._finished, ticket)
        try:
            socket.send_multipart([*head, lent], zmq.NOBLOCK, copy=False)
        finally:
            del lent

    def _finished(self, ticket: Ticket) -> None:
        # In pyzmq's garbage collector thread, or ours: a deque's append is thread-safe.
        self._out.append(ticket)
        fd = self._fd
        if fd < 0:
            return  # closed: the relay is stopping, nobody waits for checks
        try:
            os.eventfd_write(fd, 1)
        except OSError:
            pass

    def finished(self) -> list[Ticket]:
        """The tickets whose frames ZeroMQ has let go of since the last call."""
        try:
            os.eventfd_read(self._fd)
        except (BlockingIOError, OSError):
            pass
        done = []
        while self._out:
            done.append(self._out.popleft())
        return done

    def close(self) -> None:
        fd, self._fd = self._fd, -1
        if fd >= 0:
            os.close(fd)


def check_message(identity: bytes, whole: bool) -> list[bytes]:
    return [identity, wire.CHECK, b"\x01" if whole else b"\x00"]
