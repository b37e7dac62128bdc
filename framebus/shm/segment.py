"""POSIX shared-memory segments: create owner-only (or shared with one group), map, reclaim,
unlink.

posix_ipc rather than :mod:`multiprocessing.shared_memory`, whose resource
tracker unlinks segments behind the owner's back when some other process
that merely opened them exits.
"""

from __future__ import annotations

import errno
import logging
import mmap
import os

import posix_ipc

from .. import config
from ..errors import RingError, RingNotReadable, ShmFull

log = logging.getLogger(__name__)

SHM_DIR = "/dev/shm"


def create(name: str, size: int) -> mmap.mmap:
    """Create segment *name* of *size* bytes, mode 0600, and map it read-write.

    With ``$FRAMEBUS_GROUP`` the segment is that group's, mode 0640: its members may map
    it read-only (config.share_group()).

    The memory is reserved up front (``posix_fallocate``): on a full tmpfs
    this fails now with :class:`ShmFull` instead of killing the writer with
    SIGBUS at its first frame. Raises ``posix_ipc.ExistentialError`` if the
    name exists.
    """
    gid = config.share_group()  # a wrong group name fails before anything is made
    shm = posix_ipc.SharedMemory(name, posix_ipc.O_CREX, mode=0o600, size=0)
    try:
        if gid is not None:
            try:
                os.fchown(shm.fd, -1, gid)
                os.fchmod(shm.fd, 0o640)
            except OSError as exc:
                shm.unlink()
                raise RingError(f"cannot give {name} to group {gid} ($FRAMEBUS_GROUP): "
                                f"{exc.strerror}; the producer must belong to it") from None
        try:
            os.posix_fallocate(shm.fd, 0, size)
        except OSError as exc:
            shm.unlink()
            if exc.errno in (errno.ENOSPC, errno.EFBIG):
                raise ShmFull(errno.ENOSPC, _full_message(name, size)) from None
            raise
        return mmap.mmap(shm.fd, size)
    finally:
        shm.close_fd()


def open_readonly(name: str) -> mmap.mmap:
    """Map existing segment *name* read-only. Raises RingError if it is missing, and
    RingNotReadable if it is not ours to read (another user's: rings are owner-only)."""
    shm = _open_readonly(name)
    try:
        if shm.size == 0:
            raise RingError(f"segment {name} is empty")
        return mmap.mmap(shm.fd, shm.size, prot=mmap.PROT_READ)
    finally:
        shm.close_fd()


def check_readable(name: str) -> None:
    """Raise RingNotReadable if this user may not read segment *name*; a missing one passes."""
    try:
        _open_readonly(name).close_fd()
    except RingNotReadable:
        raise
    except RingError:
        pass


def _open_readonly(name: str) -> posix_ipc.SharedMemory:
    try:
        return posix_ipc.SharedMemory(name, read_only=True)
    except posix_ipc.ExistentialError:
        raise RingError(f"no shared-memory segment {name}") from None
    except posix_ipc.PermissionsError:
        raise RingNotReadable(
            f"shared-memory segment {name} is not readable by this user: it is another "
            "user's, shared with none of this user's groups (its producer shares it with a "
            "group when started with FRAMEBUS_GROUP=name)") from None


def unlink(name: str) -> bool:
    """Remove segment *name*; False if it was already gone."""
    try:
        posix_ipc.unlink_shared_memory(name)
    except posix_ipc.ExistentialError:
        return False
    except posix_ipc.PermissionsError:
        raise RingError(f"cannot remove shared-memory segment {name}: it is another "
                        "user's") from None
    return True


def pid_alive(pid: int) -> bool:
    """Whether process *pid* exists on this host and is not a zombie."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            # The state follows the parenthesised command name, which may hold spaces.
            return f.read().rpartition(b")")[2].split()[0] != b"Z"
    except (OSError, IndexError):
        return True


def _full_message(name: str, size: int) -> str:
    try:
        st = os.statvfs(SHM_DIR)
        free = st.f_bavail * st.f_frsize
    except OSError:
        return f"no room in shared memory for {name}: it needs {size / 2**20:.1f} MiB"
    return (f"no room in {SHM_DIR} for {name}: it needs {size / 2**20:.1f} MiB, "
            f"{free / 2**20:.1f} MiB free; use fewer slots, a smaller frame, or grow {SHM_DIR}")
