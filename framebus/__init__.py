"""framebus: decoded video frames in shared memory, descriptors over ZeroMQ.

The public API::

    Publisher(name, shape, dtype, fmt, slots)   # produce a stream
    Subscriber(name)                            # consume one: recv(), iterate
    MultiSubscriber(["cam1", "lobby-*"])        # many in one consumer, fairly
    wait([sub1, sub2], timeout)                 # which have a frame ready
    aio.Subscriber, aio.MultiSubscriber         # the same for asyncio
    Frame                                       # what a subscriber receives
    streams()                                   # what the broker knows
"""

from . import aio
from .discovery import BrokerClient, streams
from .errors import (
    AccessDenied,
    BrokerFull,
    BrokerRefused,
    BrokerUnavailable,
    FramebusError,
    FrameOverwritten,
    InvalidName,
    KeyFileError,
    ProtocolError,
    RingError,
    RingNotReadable,
    ShmFull,
    SiteError,
    SourceError,
    SpecError,
    StreamInUse,
    StreamNotFound,
    Timeout,
)
from .frame import Frame
from .multi import MultiSubscriber
from .protocol.broker import StreamInfo
from .publisher import Publisher
from .subscriber import Subscriber
from .waiting import wait

__version__ = "0.1.0"

__all__ = [
    "AccessDenied", "BrokerClient", "BrokerFull", "BrokerRefused", "BrokerUnavailable", "Frame",
    "FrameOverwritten", "FramebusError", "InvalidName", "KeyFileError", "MultiSubscriber",
    "ProtocolError", "Publisher", "RingError", "RingNotReadable", "ShmFull", "SiteError",
    "SourceError", "SpecError", "StreamInUse", "StreamInfo", "StreamNotFound", "Subscriber",
    "Timeout", "aio", "streams", "wait",
]
