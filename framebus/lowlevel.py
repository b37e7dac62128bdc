"""The bus's own parts, for programs that speak its protocol by hand.

Most programs want :class:`framebus.Subscriber` and :class:`framebus.Publisher`. This
module is for the rest: a client that maps the ring and reads the descriptor socket itself
(to learn the protocol, to test a client in another language against the real thing, or
to build a consumer the Subscriber does not fit). examples/lowlevel_client.py walks
through every step; docs/protocol.md and docs/ring.md specify the messages and the bytes.

- :class:`BrokerClient` asks the broker where a stream is: a :class:`StreamInfo` with its
  descriptor ``endpoint``, its ring's ``segment`` and ``token``;
- :func:`topic` is the ZeroMQ subscription prefix of a stream's descriptors;
- :class:`Descriptor` parses (``Descriptor.unpack``) and checks one descriptor;
- :class:`RingReader` maps a ring read-only: ``holds(slot, seq)`` is the sequence-lock
  check, ``view(slot)`` the pixels in place, ``copy(slot, seq)`` a checked copy;
- :class:`RingWriter` and :class:`Geometry` are the writer's side.

Everything here is as stable as the public API: names are only ever added.
"""

from .config import descriptor_endpoint, segment_name
from .discovery import BrokerClient
from .names import topic
from .protocol.broker import StreamInfo
from .protocol.descriptor import Descriptor
from .shm import Geometry, RingReader, RingWriter

__all__ = ["BrokerClient", "Descriptor", "Geometry", "RingReader", "RingWriter", "StreamInfo",
           "descriptor_endpoint", "segment_name", "topic"]
