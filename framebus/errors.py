"""Exceptions raised by framebus.

Every error a caller can act on has its own class; all of them derive from
:class:`FramebusError`, and each also derives from the builtin it refines so
that ``except TimeoutError`` or ``except ValueError`` keep working.
"""

from __future__ import annotations


class FramebusError(Exception):
    """Base class of every framebus error."""


class Timeout(FramebusError, TimeoutError):
    """No frame (or broker reply) arrived within the given time."""


class FrameOverwritten(FramebusError):
    """The writer reused the frame's slot before the reader was done with it."""


class InvalidName(FramebusError, ValueError):
    """A stream name that framebus refuses (bad characters, empty or too long)."""


class StreamInUse(FramebusError):
    """Another live producer already publishes a stream of this name."""


class StreamNotFound(FramebusError, LookupError):
    """The broker knows no stream of this name."""


class BrokerUnavailable(FramebusError, ConnectionError):
    """The broker did not answer in time."""


class ProtocolError(FramebusError, ValueError):
    """A message that does not follow the framebus wire protocol."""


class RingError(FramebusError):
    """A shared-memory segment that is missing, foreign or of an unknown layout."""


class ShmFull(FramebusError, OSError):
    """The shared-memory filesystem has no room for a new ring.

    Its message names the ring, the room it needs and the room there is; ``errno`` is
    ENOSPC, as for any full file system.
    """

    def __str__(self) -> str:
        return self.strerror or super().__str__()  # the message alone, not "[Errno 28] ..."


class AccessDenied(FramebusError, PermissionError):
    """A broker or relay beyond loopback refused this client's CurveZMQ key, or the broker
    refused a registration it could not prove (framebus/trust.py)."""


class RingNotReadable(RingError, AccessDenied):
    """A ring this user may not map: another user's, not shared with a group of ours.

    A RingError, as every ring that cannot be mapped, and an AccessDenied, because waiting
    will not help: its producer has to share it (FRAMEBUS_GROUP), or the reader has to run
    as that user or in that group.
    """


class SourceError(FramebusError):
    """A video source that cannot be opened or read; the message is one line for people."""


class SpecError(FramebusError, ValueError):
    """A decode spec (a stream's options) that framebus does not accept.

    ``key`` names the option at fault, or is None when the spec as a whole is.
    """

    def __init__(self, message: str, key: str | None = None) -> None:
        super().__init__(message)
        self.key = key


class SiteError(FramebusError, ValueError):
    """A site file that cannot be read or says something framebus does not accept."""


class KeyFileError(FramebusError):
    """CurveZMQ keys that are missing, unreadable, malformed or too open."""


class BrokerRefused(FramebusError):
    """The broker refused a request with a code that has no class of its own here
    ("internal": a bug in the broker, say)."""


class BrokerFull(BrokerRefused):
    """The broker keeps as many live streams (or relays) as its cap allows: no room for one
    more until one of them dies. The message names the cap."""
