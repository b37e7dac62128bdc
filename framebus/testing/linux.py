"""What the two-host harness (:mod:`framebus.testing.netns`) asks of Linux: its commands
(``ip``, ``nsenter``, ``unshare``, ...) and what ``/proc`` tells about processes, their
namespaces, their environment and their mounts. Nothing here makes or removes a host."""

from __future__ import annotations

import ctypes
import functools
import os
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

NETNS_DIR = Path("/run/netns")
#: Set in the environment of every process the harness starts in a host (the anchors
#: included), to the host's namespace name: how leftovers are recognised, even orphaned.
MARK = "FRAMEBUS_TEST_NETNS"
# The tmpfs's of host fbA-1-0 are mounted with sources fbshm-fbA-1-0 and fbrun-fbA-1-0.
SHM_SOURCE, RUN_SOURCE = "fbshm-", "fbrun-"

#: The commands the harness runs, and the Debian package of each.
TOOLS = {"ip": "iproute2", "unshare": "util-linux", "nsenter": "util-linux",
         "mount": "mount", "umount": "mount", "sh": "dash", "sleep": "coreutils"}

NsId = tuple[int, int]


class NetnsError(RuntimeError):
    """A namespace could not be made or removed."""


def which(name: str) -> str | None:
    """Where command *name* is, or None."""
    # root's PATH does not always hold the sbin directories (ip is /usr/sbin/ip on Debian)
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin:/usr/bin:/bin")


@functools.cache
def tool(name: str) -> str:
    """Where command *name* is; NetnsError, naming its package, if it is missing."""
    path = which(name)
    if path is None:
        raise NetnsError(f"{name} not found: apt-get install {TOOLS.get(name, name)}")
    return path


def ip(*args: str, input: str | None = None, check: bool = True) -> str:
    """``ip ARGS``' stdout; NetnsError on failure when *check*."""
    proc = subprocess.run([tool("ip"), *args], input=input, capture_output=True, text=True,
                          timeout=10)
    if check and proc.returncode != 0:
        raise NetnsError(f"ip {' '.join(args)}: {proc.stderr.strip() or proc.returncode}")
    return proc.stdout


# --- processes and namespaces, found through /proc -----------------------------------------

def pid_alive(pid: int) -> bool:
    """Whether process *pid* exists and is not a zombie (dead, waiting to be reaped)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def proc_pids() -> Iterator[int]:
    """Every process but this one."""
    me = os.getpid()
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != me:
            yield int(entry)


def ns_id(path: str | Path) -> NsId | None:
    """(device, inode) of a namespace file such as /proc/PID/ns/net; None if gone."""
    try:
        st = os.stat(path)
    except OSError:  # gone, or a zombie (whose namespaces are already released)
        return None
    return st.st_dev, st.st_ino


def pids_in_netns(netns_id: NsId | None) -> list[int]:
    """Live processes whose network namespace is *netns_id*."""
    if netns_id is None:
        return []
    return [pid for pid in proc_pids() if ns_id(f"/proc/{pid}/ns/net") == netns_id]


def mark_of(pid: int) -> str | None:
    """The host namespace named by MARK in the environment of process *pid*, if any."""
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return None
    key = MARK.encode() + b"="
    for var in environ.split(b"\0"):
        if var.startswith(key):
            return var[len(key):].decode(errors="replace")
    return None


def marked_processes() -> list[tuple[int, str]]:
    """(pid, host namespace) of every live process carrying MARK in its environment."""
    return [(pid, mark) for pid in proc_pids() if (mark := mark_of(pid))]


def mount_sources(pid: int) -> set[str]:
    """The sources of the mounts that process *pid* sees."""
    try:
        text = Path(f"/proc/{pid}/mountinfo").read_text()
    except OSError:
        return set()
    # "36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw": source after " - fs"
    return {fields[1] for line in text.splitlines()
            if len(fields := line.split(" - ", 1)[-1].split()) > 1}


def kill(pid: int, sig: int) -> None:
    """Signal *pid*, if it still exists."""
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def killpg(pid: int, sig: int) -> None:
    """Signal process group *pid*, if it still exists."""
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def die_with_parent() -> None:
    """preexec_fn: SIGKILL this child when the process that started it dies."""
    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
