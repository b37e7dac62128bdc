"""Defaults and the environment variables that override them."""

from __future__ import annotations

import grp
import os
import socket
from pathlib import Path

DEFAULT_BROKER = "tcp://127.0.0.1:5555"

#: A producer heartbeats this often (seconds)...
HEARTBEAT_INTERVAL = 0.5
#: ...and the broker declares it dead after this long without one.
DEAD_AFTER = 1.5


def broker_address(explicit: str | None = None) -> str:
    """The broker endpoint: *explicit*, else ``$FRAMEBUS_BROKER``, else the default."""
    return explicit or os.environ.get("FRAMEBUS_BROKER") or DEFAULT_BROKER


def shm_prefix() -> str:
    """Prefix of every shared-memory segment name (``$FRAMEBUS_SHM_PREFIX``)."""
    return os.environ.get("FRAMEBUS_SHM_PREFIX", "framebus")


def segment_name(stream: str) -> str:
    """The POSIX shared-memory name of a stream's ring (a validated stream name)."""
    return f"/{shm_prefix()}.{stream}"


def share_group() -> int | None:
    """The group granted read access to this user's streams (``$FRAMEBUS_GROUP``), or None.

    Unset, rings and sockets are owner-only. Set, rings are created 0640 and the descriptor
    sockets 0660 with that group, so its members (a web server's user, say) can subscribe;
    a producer must belong to the group (or be root) to hand its files to it.
    """
    name = os.environ.get("FRAMEBUS_GROUP")
    if not name:
        return None
    try:
        return grp.getgrnam(name).gr_gid
    except KeyError:
        raise PermissionError(f"FRAMEBUS_GROUP={name!r}: no such group on this host") from None


def share(path: str | Path, mode: int) -> None:
    """Give *path* (a socket file or directory of ours) to the share group, with *mode*;
    nothing without one."""
    gid = share_group()
    if gid is not None:
        os.chown(path, -1, gid)
        os.chmod(path, mode)


def runtime_dir() -> Path:
    """An owner-only directory for the producers' descriptor sockets.

    ``$FRAMEBUS_RUNTIME_DIR``, else ``$XDG_RUNTIME_DIR/framebus``, else
    ``/tmp/framebus-<uid>``. Created 0700 (0750, and the share group's, with
    ``$FRAMEBUS_GROUP``); refused if someone else owns it.
    """
    explicit = os.environ.get("FRAMEBUS_RUNTIME_DIR")
    if explicit:
        path = Path(explicit)
    elif os.environ.get("XDG_RUNTIME_DIR"):
        path = Path(os.environ["XDG_RUNTIME_DIR"]) / "framebus"
    else:
        path = Path("/tmp") / f"framebus-{os.getuid()}"
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    if path.stat().st_uid != os.getuid():
        raise PermissionError(f"{path} belongs to another user; set FRAMEBUS_RUNTIME_DIR")
    share(path, 0o750)
    return path


def socket_file(stream: str) -> Path:
    """The ipc socket file on which a local producer publishes the descriptors of *stream*."""
    return runtime_dir() / f"{stream}.sock"


def descriptor_endpoint(stream: str) -> str:
    """Where a local producer publishes the descriptors of *stream*."""
    return f"ipc://{socket_file(stream)}"


def ipc_path(endpoint: str) -> Path | None:
    """The socket file of an ``ipc://`` endpoint; None for any other transport."""
    return Path(endpoint[len("ipc://"):]) if endpoint.startswith("ipc://") else None


def host_id() -> str:
    """Identifies this host to the broker (``$FRAMEBUS_HOST``, else the hostname)."""
    return os.environ.get("FRAMEBUS_HOST") or socket.gethostname()
