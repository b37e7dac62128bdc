"""What a producer killed outright leaves behind, and how it is reclaimed.

A producer that stops cleanly unlinks its ring and its descriptor socket file. One killed
by SIGKILL (or the OOM killer) cannot: its segment stays in /dev/shm, holding memory, and
its socket files (the descriptors' ``.sock``, the wake-up's ``.wake``) stay in the runtime
directory. Whoever looks next reclaims them, once the
writer's process is gone:

- the next producer of the same stream, when it creates its ring;
- `framebus up`, as soon as one of its children dies;
- the broker, at its start and then every few seconds, for every ring of this host.

A segment is only ever removed when its header names a writer that no longer runs, so a
producer that is starting (its segment made, its header not yet written) is never robbed.
"""

from __future__ import annotations

import logging
import os
import socket
from pathlib import Path

from . import config
from .names import is_valid_stream_name
from .packets import where as packet_places
from .shm import read_header, reclaim
from .shm.segment import SHM_DIR, pid_alive
from .shm.wake import wake_file

#: The socket files a producer listens on, by suffix, and their socket types.
SOCKET_KINDS = {".sock": socket.SOCK_STREAM, ".wake": socket.SOCK_SEQPACKET}

log = logging.getLogger(__name__)


def clean_after(stream: str) -> bool:
    """Reclaim the ring and socket file of *stream* if its producer is dead.

    For a producer known to have died (a supervisor's child): a segment of that name
    that is not a ring at all is removed too. Returns whether anything was removed.
    """
    segment = config.segment_name(stream)
    header = read_header(segment)
    if header is not None and pid_alive(header.writer_pid):
        return False  # a live producer holds the name now: its ring and socket are its own
    removed = reclaim(segment)
    removed = packet_places.clean_after(stream) or removed
    return _unlink_socket(stream) or removed


def reclaim_stale() -> list[str]:
    """Reclaim every ring of this host (this prefix) whose writer is gone, and the socket
    files nobody listens on any more. Returns the streams cleaned up."""
    cleaned = []
    prefix = config.shm_prefix() + "."
    for entry in _listdir(Path(SHM_DIR)):
        stream = entry[len(prefix):] if entry.startswith(prefix) else None
        if not stream or not is_valid_stream_name(stream):
            continue
        header = read_header(f"/{entry}")
        if header is None or pid_alive(header.writer_pid):
            continue  # not a ring yet (or not ours), or its writer runs
        if reclaim(f"/{entry}", header.token):
            _unlink_socket(stream)
            cleaned.append(stream)
    cleaned += [s for s in _dead_sockets() if s not in cleaned and _unlink_socket(s)]
    cleaned += [s for s in packet_places.reclaim_stale() if s not in cleaned]
    return cleaned


def remove_dead_socket(stream: str) -> bool:
    """Unlink the socket files of *stream* nobody listens on; whether it did."""
    removed = False
    for path, kind in ((config.socket_file(stream), socket.SOCK_STREAM),
                       (wake_file(stream), socket.SOCK_SEQPACKET)):
        if path.exists() and not _listening(path, kind):
            path.unlink(missing_ok=True)
            log.info("removed the socket file %s left by a dead producer", path)
            removed = True
    return removed


def _dead_sockets() -> list[str]:
    """Streams whose socket file is left with no ring of theirs and no one listening."""
    try:
        directory = config.runtime_dir()
    except OSError:
        return []
    dead = []
    for entry in _listdir(directory):
        stream, suffix = entry[:-5], entry[-5:]
        if suffix not in SOCKET_KINDS or not is_valid_stream_name(stream) or stream in dead:
            continue
        header = read_header(config.segment_name(stream))
        if header is not None and pid_alive(header.writer_pid):
            continue  # a producer of ours: alive, never probed
        if not _listening(directory / entry, SOCKET_KINDS[suffix]):
            dead.append(stream)
    return dead


def _listening(path: Path, kind: int = socket.SOCK_STREAM) -> bool:
    with socket.socket(socket.AF_UNIX, kind) as probe:
        try:
            probe.connect(str(path))
        except (ConnectionRefusedError, FileNotFoundError):
            return False
        except OSError:
            return True  # not ours to judge (permissions, not a socket): leave it
    return True


def _unlink_socket(stream: str) -> bool:
    """Remove the socket files of *stream* (descriptors and wake-up); whether one was there."""
    removed = False
    for path in (config.socket_file(stream), wake_file(stream)):
        try:
            path.unlink()
        except FileNotFoundError:
            continue
        log.info("removed the socket file %s left by a dead producer", path)
        removed = True
    return removed


def _listdir(directory: Path) -> list[str]:
    try:
        return os.listdir(directory)
    except OSError:
        return []
