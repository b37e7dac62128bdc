"""How much of each packet stream the relay keeps for its remote readers.

Its own module, free of ZeroMQ and numpy, so that `framebus relay --help` and the site
file read the defaults without loading the relay.
"""

from __future__ import annotations

from dataclasses import dataclass

#: What a stream's buffer holds at most by default: about 40 s of a 1080p25 camera, or 32 MiB
#: (`framebus relay --packet-buffer/--packet-buffer-mib`): how long a remote recorder may be
#: away, or fall behind, and still get every packet.
MAX_PACKETS = 1024
MAX_BYTES = 32 << 20
#: The most either option may ask, against a typo's hundred gigabytes: per stream.
MOST_PACKETS, MOST_MIB = 1 << 20, 16 << 10


@dataclass(frozen=True)
class BufferLimits:
    """The most packets, and bytes, one stream's buffer holds."""

    packets: int = MAX_PACKETS
    bytes: int = MAX_BYTES

    def __post_init__(self) -> None:
        if self.packets < 1 or self.bytes < 1:
            raise ValueError(f"a packet buffer holds at least 1 packet and 1 byte, not "
                             f"{self.packets} packets and {self.bytes} bytes")


DEFAULT_LIMITS = BufferLimits()
