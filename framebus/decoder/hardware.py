"""Hardware decoding (``--hwaccel``), through PyAV's ``av.codec.hwaccel`` where it has it.

``none`` decodes on the CPU. ``auto`` takes a hardware decoder if this machine has one
(its device node is there and FFmpeg can open it) and otherwise says plainly that it
decodes on the CPU. A device type asked for by name (``cuda``, ``vaapi``, ...) that this
PyAV's FFmpeg lacks, or this machine lacks, is a clear error: the operator asked for it.
"""

from __future__ import annotations

import glob
import logging
from typing import Any

import av

from ..errors import SourceError

log = logging.getLogger(__name__)

#: Where each device type's hardware shows itself on Linux.
DEVICE_NODES = {"cuda": "/dev/nvidia[0-9]*", "vaapi": "/dev/dri/renderD*",
                "qsv": "/dev/dri/renderD*", "drm": "/dev/dri/card*",
                "vdpau": "/dev/nvidia[0-9]*"}
CPU_MESSAGE = "no hardware decoder here: decoding on the CPU"


def available() -> list[str]:
    """The device types this PyAV's FFmpeg was built with."""
    try:
        from av.codec.hwaccel import hwdevices_available
    except ImportError:  # a PyAV older than 14 has no hardware decoding
        return []
    return list(hwdevices_available())


def present(device: str) -> bool:
    pattern = DEVICE_NODES.get(device)
    return pattern is None or bool(glob.glob(pattern))


def choose(asked: str) -> list[str]:
    """The device types to try for *asked*, in order; [] to decode on the CPU."""
    if asked == "none":
        return []
    built = available()
    if asked == "auto":
        found = [d for d in built if d in DEVICE_NODES and present(d)]
        if not found:
            log.info(CPU_MESSAGE)
        return found
    if asked not in built:
        raise SourceError(f"--hwaccel {asked}: this PyAV's FFmpeg has no {asked} decoding "
                          f"(it has: {', '.join(built) or 'none'}); use --hwaccel auto or none")
    if not present(asked):
        raise SourceError(f"--hwaccel {asked}: no {asked} device on this machine "
                          f"({DEVICE_NODES[asked]} is missing); use --hwaccel auto or none")
    return [asked]


def open_with(url: str, arguments: dict[str, Any], devices: list[str],
              asked: str) -> av.container.InputContainer:
    """Open *url* decoding on the first of *devices* that works, else on the CPU (for
    ``auto``; a device asked for by name that fails is an error)."""
    for device in devices:
        from av.codec.hwaccel import HWAccel

        try:
            container = av.open(url, mode="r", hwaccel=HWAccel(
                device, allow_software_fallback=asked == "auto"), **arguments)
        except (av.FFmpegError, OSError) as exc:
            if asked != "auto":
                raise SourceError(f"--hwaccel {asked}: the {asked} decoder cannot be "
                                  f"opened here: {exc}") from None
            log.info("hardware decoder %s cannot be opened (%s)", device, exc)
            continue
        log.info("decoding on %s hardware", device)
        return container
    if devices:
        log.info(CPU_MESSAGE)
    return av.open(url, mode="r", **arguments)
