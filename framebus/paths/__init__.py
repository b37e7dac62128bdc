"""The ways a Subscriber reaches its stream, each behind the one small interface of
paths/base.py:

- ``shm`` (paths/shm.py): the producer is on this host; descriptors over ZeroMQ, pixels
  mapped read-only from the ring, zero copies;
- ``tcp`` (paths/tcp.py): the producer is on another host; frames from that host's relay,
  one per credit.

A path is handed all it needs (PathContext) and tells the subscriber one thing back: that
it has seen a new ring, so the broker is worth asking again. It never reaches into the
subscriber.
"""

from .base import Path, PathContext, Request
from .counts import Counts

__all__ = ["Counts", "Path", "PathContext", "Request"]
