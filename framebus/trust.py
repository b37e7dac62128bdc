"""Who may register what with the broker: the checks that keep other users' hands off streams.

Anyone who can reach the broker may ask it things, so a registration is believed only as
far as it can be proven:

- **A stream of this host** names its ring, and the ring is there to be read: the broker
  opens it and requires the token and the writer pid the registration claims, and that the
  segment belongs to the Unix user who runs that pid. Another user cannot make a segment
  that belongs to someone else, so claiming a live producer's pid gets them nothing.
- **A stream or relay of another host** comes over CurveZMQ with a client key, and a key
  registers for one host only: the first it registered as (trust on first use, for the
  broker's lifetime). A client without a key (loopback) registers for this host only.
- **A relay of this host** must be a process of the broker's user (or root) that listens
  on the endpoint it gives: the kernel is asked (/proc), so another user can neither
  point remote readers at a relay of its own nor claim the real relay's pid for its
  endpoint.
- **What only the producer knows.** Each registration carries a secret that the broker
  never tells anyone; replacing a live stream, heartbeating it and unregistering it all
  need it. The ring's token, which every subscriber learns, is not enough.

``trust_loopback=True`` (``framebus broker --trust-loopback``) turns the first two checks
off for loopback clients, as they were before: for simulated producers in tests and
benchmarks, and sites of one user.
"""

from __future__ import annotations

import hmac
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .errors import FramebusError
from .shm.ring import read_header
from .shm.segment import SHM_DIR, pid_alive

log = logging.getLogger(__name__)


class Untrusted(FramebusError):
    """A registration whose claims the broker could not prove."""


@dataclass(frozen=True)
class Origin:
    """Where a request came from: a client key (z85, over CurveZMQ) or none (loopback)."""

    key: str | None = None


@dataclass
class Gatekeeper:
    """The broker's checks on registrations of streams and relays."""

    host: str
    trust_loopback: bool = False
    #: Each client key and the one host it registers for.
    _key_hosts: dict[str, str] = field(default_factory=dict)

    def check_host(self, claimed: str, origin: Origin, what: str) -> None:
        """Raise Untrusted unless a client of *origin* may register *what* for host *claimed*."""
        if origin.key is None:
            if claimed != self.host and not self.trust_loopback:
                raise Untrusted(f"{what}: a client without a key registers only for this "
                                f"host ({self.host!r}), not {claimed!r}")
            return
        bound = self._key_hosts.get(origin.key)
        if bound is None:  # authorized keys only get here: the table is as small as the site
            self._key_hosts[origin.key] = claimed
            log.info("client key %s... registers for host %s from now on", origin.key[:8],
                     claimed)
        elif bound != claimed:
            raise Untrusted(f"{what}: this client key registers for host {bound!r} only, "
                            f"not {claimed!r}")

    def check_ring(self, segment: str, token: bytes, pid: int, origin: Origin,
                   read: Callable[[str], Any] = read_header) -> None:
        """Raise Untrusted unless ring *segment* of this host is the one claimed: its
        token and writer pid, and a segment owned by the user who runs *pid*. *read* reads
        its header (a packet ring's has its own)."""
        if origin.key is None and self.trust_loopback:
            return
        header = read(segment)
        if header is None:
            raise Untrusted(f"ring {segment} cannot be read here: the broker believes a "
                            "stream of this host only once it has seen its ring")
        if not hmac.compare_digest(header.token, token) or header.writer_pid != pid:
            raise Untrusted(f"ring {segment} is not the one claimed: its token or its "
                            "writer's pid differ")
        owner, runner = _owner(SHM_DIR + segment), _owner(f"/proc/{pid}")
        if owner is None or runner is None or owner != runner or not pid_alive(pid):
            raise Untrusted(f"ring {segment} belongs to uid {owner}, and pid {pid} is run by "
                            f"uid {runner}: a producer registers only its own ring")

    def check_relay(self, endpoint: str, pid: int, origin: Origin) -> None:
        """Raise Untrusted unless *pid*, a process of this broker's user or root, listens
        on the TCP port of *endpoint*."""
        if origin.key is None and self.trust_loopback:
            return
        runner = _owner(f"/proc/{pid}")
        if runner is None or runner not in (os.geteuid(), 0):
            raise Untrusted(f"a relay of this host runs as the broker's user: pid {pid} is "
                            f"run by uid {runner}")
        port = endpoint.rsplit(":", 1)[-1]
        if not port.isdigit() or not _listens(pid, int(port)):
            raise Untrusted(f"pid {pid} does not listen on {endpoint}")


def _listens(pid: int, port: int) -> bool:
    """Whether process *pid* holds a TCP socket listening on *port* (this network
    namespace's /proc/net/tcp and tcp6, against the process's open descriptors)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                rows = [line.split() for line in f.readlines()[1:]]
        except OSError:
            continue
        # local_address is ADDR:PORT in hex; state 0A is LISTEN; the inode is column 9
        inodes |= {row[9] for row in rows
                   if len(row) > 9 and row[3] == "0A" and int(row[1].rsplit(":", 1)[1], 16) == port}
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return False
    for fd in fds:
        try:
            link = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if link.startswith("socket:[") and link[8:-1] in inodes:
            return True
    return False


def same_secret(a: bytes, b: bytes) -> bool:
    """Whether two producer secrets match, in time that does not tell how much did."""
    return hmac.compare_digest(a, b)


def _owner(path: str) -> int | None:
    try:
        return os.stat(path).st_uid
    except OSError:
        return None
