"""PacketPublisher: the producer's side of a packet stream.

It owns a packet ring in shared memory and a ZeroMQ PUB socket: each packet is written into
the ring, then announced with a PacketDescriptor. A background thread registers the stream
with the broker (kind "packets", beside the pixel stream of the same name) and heartbeats
with its figures: packets/s, bit rate, key-frame interval, corrupt packets.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any

import zmq

from .. import config
from ..discovery import BrokerClient
from ..errors import FramebusError
from ..names import topic, validate_stream_name
from ..protocol.packet import PacketDescriptor
from ..publisher import _Connections
from ..support.rates import RateMeter
from ..support.registration import StreamRegistration
from . import where
from .layout import CodecInfo
from .ring import PacketRingWriter

log = logging.getLogger(__name__)

#: Bytes of a packet ring unless told: 16 s of a 1080p camera at 8 Mbit/s.
RING_BYTES = 16 * 2**20
INDEX = 1024


class PacketFigures:
    """Rates of a packet stream, for the heartbeat: packets/s, bits/s, key-frame interval."""

    def __init__(self) -> None:
        self.packets = RateMeter(window=5.0)
        self._bytes: list[tuple[float, int]] = []
        self._keys: list[float] = []
        self.corrupt = 0
        self._lock = threading.Lock()

    def add(self, size: int, keyframe: bool, corrupt: bool) -> None:
        now = time.monotonic()
        self.packets.add()
        with self._lock:
            self._bytes.append((now, size))
            if keyframe:
                self._keys.append(now)
            self.corrupt += corrupt
            self._trim(now)

    def _trim(self, now: float) -> None:
        while self._bytes and now - self._bytes[0][0] > 5.0:
            self._bytes.pop(0)
        while len(self._keys) > 2 and now - self._keys[0] > 30.0:
            self._keys.pop(0)

    def as_dict(self) -> dict[str, int | float]:
        with self._lock:
            self._trim(time.monotonic())
            span = (self._bytes[-1][0] - self._bytes[0][0]) if len(self._bytes) > 1 else 0.0
            total = sum(size for _, size in self._bytes[1:])
            keys = self._keys
            keyint = (keys[-1] - keys[0]) / (len(keys) - 1) if len(keys) > 1 else 0.0
        return {"bitrate": round(8 * total / span) if span > 0 else 0,
                "keyint": round(keyint, 3), "corrupt": self.corrupt}


class PacketPublisher:
    """Publish the compressed packets of one stream.

    >>> pub = PacketPublisher("cam1", CodecInfo("h264", extradata, (1, 90000), 1920, 1080))
    >>> pub.publish(bytes(packet), pts=p.pts, dts=p.dts, duration=p.duration,
    ...             keyframe=p.is_keyframe)
    """

    def __init__(self, name: str, codec: CodecInfo, *, ring_bytes: int = RING_BYTES,
                 index: int = INDEX, broker: str | None = None,
                 context: zmq.Context | None = None, endpoint: str | None = None) -> None:
        self._closed = True
        self.name = validate_stream_name(name)
        self._segment = where.segment_name(name)
        self._ring = PacketRingWriter.create(self._segment, codec, ring_bytes, index)
        self.seq = 0
        self.figures: dict[str, int | float] = {}
        self.rates = PacketFigures()
        self._own_context = context is None
        self._context = zmq.Context() if context is None else context
        self._topic = topic(self.name)
        self._socket = self._context.socket(zmq.PUB)
        self._socket.linger = 0
        self._socket.sndhwm = 1000
        self._socket_file: Path | None = None
        self._connections = _Connections(self._socket)
        self._registration = _Registration(self, BrokerClient(broker, context=self._context,
                                                              timeout=0.5))
        try:
            self.endpoint = endpoint or where.descriptor_endpoint(self.name)
            try:
                self._socket.bind(self.endpoint)
            except zmq.ZMQError as exc:
                raise FramebusError(f"cannot publish packet descriptors on {self.endpoint}: "
                                    f"{exc}") from None
            self._socket_file = config.ipc_path(self.endpoint)
            if self._socket_file is not None:
                config.share(self._socket_file, 0o660)
            self._registration.first_attempt()
            self._registration.start()
        except BaseException:
            self._close_transport()
            raise
        self._closed = False

    @property
    def codec(self) -> CodecInfo:
        return self._ring.codec

    @property
    def generation(self) -> int:
        return self._ring.generation

    @property
    def ring_bytes(self) -> int:
        return self._ring.header.data_bytes

    def publish(self, data, *, pts: int | None, dts: int | None, duration: int = 0,
                keyframe: bool, corrupt: bool = False,
                timestamp_ns: int | None = None) -> int:
        """Write one packet into the ring and announce it; returns its seq."""
        seq, ring = self.seq, self._ring
        data = memoryview(data).cast("B")
        stamp = time.time_ns() if timestamp_ns is None else timestamp_ns
        ring.write(seq, data, pts=pts, dts=dts, duration=int(duration or 0),
                   keyframe=bool(keyframe), corrupt=bool(corrupt), timestamp_ns=stamp)
        desc = PacketDescriptor(stream=self.name, generation=ring.generation, token=ring.token,
                                seq=seq, size=len(data), keyframe=bool(keyframe), pts=pts,
                                timestamp_ns=stamp)
        self._socket.send(self._topic + desc.pack())
        self.seq = seq + 1
        self.rates.add(len(data), bool(keyframe), bool(corrupt))
        return seq

    def set_codec(self, codec: CodecInfo) -> None:
        """The codec parameters changed: a new ring generation replaces the old, and
        readers see ``packet.codec`` change. The same parameters change nothing."""
        if codec == self._ring.codec:
            return
        old = self._ring
        old.close(unlink=True)
        self._ring = PacketRingWriter.create(self._segment, codec, old.header.data_bytes,
                                             old.header.index_count, old.generation + 1)
        self._registration.changed()
        log.info("%s: packets, generation %d, %s %dx%d", self.name, self._ring.generation,
                 codec.name, codec.width, codec.height)

    @property
    def subscribers(self) -> int:
        """Subscribers connected to the packet descriptors, as of the last heartbeat."""
        return self._connections.count

    def close(self) -> None:
        """Unregister, stop publishing and unlink the ring. Idempotent."""
        if getattr(self, "_closed", True):
            return
        self._closed = True
        self._close_transport()

    def _close_transport(self) -> None:
        try:
            self._registration.stop()
        finally:
            self._connections.close()
            self._socket.close(linger=0)
            if self._own_context:
                self._context.destroy(linger=0)
            if self._socket_file is not None:
                self._socket_file.unlink(missing_ok=True)
            self._ring.close(unlink=True)

    def __enter__(self) -> PacketPublisher:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass

    def __repr__(self) -> str:
        return f"<PacketPublisher {self.name} {self.codec.name} seq={self.seq}>"


class _Registration(StreamRegistration):
    """Keeps the broker told of the packet stream (kind "packets"), as a Publisher's does
    (framebus/support/registration.py)."""

    def __init__(self, pub: PacketPublisher, client: BrokerClient) -> None:
        super().__init__(client, pub.name, kind="packets", publishing="publishing packets")
        self._pub = pub

    def token(self) -> bytes:
        return self._pub._ring.token

    def describe(self) -> dict[str, Any]:
        ring = self._pub._ring
        codec = ring.codec
        return {"host": config.host_id(), "pid": ring.header.writer_pid, "segment": ring.name,
                "endpoint": self._pub.endpoint, "generation": ring.generation,
                "shape": [max(1, codec.height), max(1, codec.width)], "dtype": "packets",
                "fmt": codec.name, "slots": ring.header.index_count}

    def report(self) -> dict[str, Any]:
        pub = self._pub
        rates = pub.rates.packets
        return {"subscribers": pub._connections.update(),
                "figures": {**pub.figures, **pub.rates.as_dict()}, "frames": rates.total,
                "fps": round(rates.rate, 2), "age": rates.age}
