"""Compressed packets on the bus: a packet stream beside each pixel stream (docs/packets.md).

::

    with PacketSubscriber("cam1") as sub:
        sub.codec                    # CodecInfo: name, extradata, time_base, width, height
        for pkt in sub:              # pkt.data: read-only view of the ring, zero copies
            ...                      # pkt.pts, pkt.dts, pkt.keyframe, pkt.bytes()
"""

from .layout import CodecInfo
from .packet import Packet
from .publisher import PacketPublisher
from .subscriber import PacketSubscriber

__all__ = ["CodecInfo", "Packet", "PacketPublisher", "PacketSubscriber"]
