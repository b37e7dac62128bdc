"""Where a packet stream lives on this host, and how what a killed producer left is reclaimed.

A packet stream has its pixel stream's name, so its names must never clash with a pixel
stream's: its ring is ``/<prefix>-packets.<stream>`` (a pixel ring is ``/<prefix>.<stream>``)
and its descriptor socket is ``<runtime dir>/<stream>@packets.sock`` ('@' is in no stream
name, so no pixel stream's socket file is ever taken for it).
"""

from __future__ import annotations

import logging
import os
import socket
from pathlib import Path

from .. import config, shm
from ..names import is_valid_stream_name
from ..shm.segment import SHM_DIR, pid_alive
from .ring import read_header, reclaim

#: How a ring of each kind has its header read (the broker checks registrations so).
READ_HEADER = {"frames": shm.read_header, "packets": read_header}

log = logging.getLogger(__name__)


def prefix() -> str:
    return f"{config.shm_prefix()}-packets"


def segment_name(stream: str) -> str:
    """The POSIX shared-memory name of a stream's packet ring."""
    return f"/{prefix()}.{stream}"


SOCKET_SUFFIX = "@packets.sock"


def socket_file(stream: str) -> Path:
    return config.runtime_dir() / f"{stream}{SOCKET_SUFFIX}"


def descriptor_endpoint(stream: str) -> str:
    return f"ipc://{socket_file(stream)}"


def reclaim_stale() -> list[str]:
    """Reclaim every packet ring of this host whose writer is gone, and the packet socket
    files nobody listens on. Returns the streams cleaned up."""
    cleaned = []
    start = prefix() + "."
    for entry in _listdir(Path(SHM_DIR)):
        stream = entry[len(start):] if entry.startswith(start) else None
        if not stream or not is_valid_stream_name(stream):
            continue
        header = read_header(f"/{entry}")
        if header is None or pid_alive(header.writer_pid):
            continue  # not a packet ring yet, or its writer runs
        if reclaim(f"/{entry}", header.token):
            cleaned.append(stream)
    try:
        directory = config.runtime_dir()
    except OSError:
        return cleaned
    for entry in _listdir(directory):
        stream = entry.removesuffix(SOCKET_SUFFIX)
        if stream == entry or not is_valid_stream_name(stream):
            continue
        header = read_header(segment_name(stream))
        if header is not None and pid_alive(header.writer_pid):
            continue
        if not _listening(directory / entry):
            (directory / entry).unlink(missing_ok=True)
            log.info("removed the packet socket file of %s left by a dead producer", stream)
            if stream not in cleaned:
                cleaned.append(stream)
    return cleaned


def clean_after(stream: str) -> bool:
    """Reclaim the packet ring and socket of *stream* if its producer is dead."""
    header = read_header(segment_name(stream))
    if header is not None and pid_alive(header.writer_pid):
        return False
    removed = reclaim(segment_name(stream))
    try:
        path = socket_file(stream)
    except OSError:
        return removed
    if path.exists():
        path.unlink(missing_ok=True)
        removed = True
    return removed


def _listening(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        try:
            probe.connect(str(path))
        except (ConnectionRefusedError, FileNotFoundError):
            return False
        except OSError:
            return True
    return True


def _listdir(directory: Path) -> list[str]:
    try:
        return os.listdir(directory)
    except OSError:
        return []
