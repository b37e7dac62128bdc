"""framebus: decoded video frames in shared memory, descriptors over ZeroMQ.

The public API::

    Publisher(name, shape, dtype, fmt, slots)   # produce a stream
    Subscriber(name)                            # consume one: recv(), iterate
    Frame                                       # what a subscriber receives
    streams()                                   # what the broker knows
"""

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
    ShmFull,
    SiteError,
    SourceError,
    SpecError,
    StreamInUse,
    StreamNotFound,
    Timeout,
)
from .frame import Frame
from .protocol.broker import StreamInfo
from .publisher import Publisher
from .subscriber import Subscriber

__version__ = "0.1.0"

__all__ = [
    "AccessDenied", "BrokerClient", "BrokerFull", "BrokerRefused", "BrokerUnavailable", "Frame",
    "FrameOverwritten", "FramebusError", "InvalidName", "KeyFileError", "ProtocolError",
    "Publisher", "RingError", "ShmFull", "SiteError", "SourceError", "SpecError", "StreamInUse",
    "StreamInfo", "StreamNotFound", "Subscriber", "Timeout", "streams",
]
