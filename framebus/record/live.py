"""Recording a live packet stream: which mode a stream allows, and the loop that copies
its packets into a :class:`~framebus.record.remux.Remuxer`'s files."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable

from ..discovery import BrokerClient
from ..errors import FramebusError, FrameOverwritten, Timeout
from ..packets import PacketSubscriber
from .remux import Remuxer

log = logging.getLogger("framebus.record")

_UNITS = {"": 1, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600}


def parse_period(text: str) -> float:
    """``"10min"``, ``"2s"``, ``"1h"``, ``"30"`` (seconds) -> seconds; ValueError if not."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(s|sec|m|min|h)?\s*", text)
    if not match or float(match.group(1)) <= 0:
        raise ValueError(f"expected a period like 10min, 30s or 1h, got {text!r}")
    return float(match.group(1)) * _UNITS[match.group(2) or ""]


def has_packets(name: str, broker: str | None, timeout: float = 2.0) -> bool:
    """Whether stream *name* has a packet stream (a decoder of encoded video) or only
    pixels; waits until the broker knows one of them (a recorder may start first)."""
    said = False
    while True:
        for kind in ("packets", "frames"):
            try:
                with BrokerClient(broker, timeout=timeout) as client:
                    client.lookup(name, kind=kind)
                return kind == "packets"
            except FramebusError:
                pass
        if not said:
            log.warning("waiting for stream %s to appear...", name)
            said = True
        time.sleep(0.5)


def record_packets(sub: PacketSubscriber, remuxer: Remuxer, stop: Callable[[], str | None],
                   duration: float | None = None, frames: int | None = None) -> str:
    """Copy packets until *stop* gives a reason, *duration* seconds have been recorded or
    *frames* pictures written."""
    end = None
    lost = 0
    while True:
        reason = stop()
        if reason is not None:
            return reason
        if end is not None and time.monotonic() >= end:
            return f"{duration:g} s recorded"
        try:
            packet = sub.recv(timeout=0.25)
        except Timeout:
            continue
        try:
            data = packet.bytes()
        except FrameOverwritten:
            lost += 1
            log.warning("%s: packet %d overwritten before it was copied", sub.name, packet.seq)
            continue
        remuxer.add(data, packet, packet.codec, wall=packet.timestamp_ns / 1e9)
        if frames is not None and remuxer.packets >= frames:
            # The packet that showed the last picture whole begins one more: not written.
            remuxer.drop_held()
            return f"{frames} frames recorded"
        if remuxer.files and end is None and duration is not None:
            end = time.monotonic() + duration
