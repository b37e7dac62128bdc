"""What the relay knows of one remote subscriber: its credits, what it has, and how its raw
frames go: from their slot, or, while its frames keep being reused on their way, copied."""

from __future__ import annotations

from dataclasses import dataclass

import zmq

from ..protocol import relay as wire
from .feed import Newest
from .sending import SlotSends, Ticket

#: After a frame sent from its slot was reused while it was sent, a subscriber's next
#: frames are copied out (once per frame, shared) before the relay tries the slot again:
#: one at first, twice as many after each such frame, up to this many; each frame that
#: comes whole from its slot halves the run. A torn send wastes a whole transfer, a copy
#: costs a memcpy: a writer that laps the ring faster than a link carries a frame (flat out,
#: or many subscribers at once) makes the relay copy, and only then.
MAX_COPY_RUN = 64


@dataclass
class Client:
    """What the relay knows of one remote subscriber, and how its raw frames are sent."""

    socket: zmq.Socket
    identity: bytes
    want: wire.Want
    credit: int = 0
    last_seen: float = 0.0
    #: Wants a stream the relay has not heard of: the stream list refresh it waits beyond.
    pending: int | None = None
    #: (token, seq) of the last frame sent to it. A credit sent before that frame arrived
    #: names an older ring, or none, and must not fetch the same frame again.
    sent: tuple[bytes, int] | None = None
    #: The frame sent from its slot whose check is not sent yet: no other frame goes before.
    unconfirmed: Ticket | None = None
    #: Frames to copy out before sending from the slot again: one sent from its slot
    #: was reused meanwhile (a fast writer, a slow link), and would likely be again.
    copies_left: int = 0
    copy_run: int = 1  # the copies after the next torn one

    def send(self, newest: Newest, slot_sends: SlotSends, key: tuple[int, bytes]) -> bool:
        """Send *newest* as it wants it: from its slot (a check follows), or copied.
        False if it could not go now; raises ValueError, FrameOverwritten, zmq.Again."""
        head = [self.identity, wire.FRAME, newest.packed, self.want.codec.encode()]
        if self.want.codec == "jpeg":
            self.socket.send_multipart([*head, newest.jpeg(self.want.setting)], zmq.NOBLOCK)
            return True
        frame = newest.frame
        if self.copies_left:  # a frame was reused while it was sent: copy for a while
            self.socket.send_multipart([*head, newest.copy_out().data], zmq.NOBLOCK,
                                       copy=False)
            self.copies_left -= 1
            return True
        try:
            pixels = frame.array
        except (IndexError, TypeError):  # the feed closed the ring meanwhile
            return False
        if not frame.valid():
            return False
        ticket = Ticket(key, frame)
        head[1] = wire.SLOT
        slot_sends.send(self.socket, head, pixels, ticket)
        self.unconfirmed = ticket
        return True

    def checked(self, whole: bool, max_credit: int) -> None:
        """Its last frame sent from the slot is out: whole, or reused meanwhile."""
        self.unconfirmed = None
        if whole:
            self.copy_run = max(1, self.copy_run // 2)
            return
        self.credit = min(max_credit, self.credit + 1)  # the credit is not spent
        self.copies_left = self.copy_run
        self.copy_run = min(MAX_COPY_RUN, 2 * self.copy_run)
