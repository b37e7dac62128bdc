"""Two real hosts on one machine, for the tests of framebus across hosts.

A *host* here is what framebus sees of a machine: its own network stack (addresses,
loopback, ports), its own ``/dev/shm``, its own runtime directory and its own name.
Each is built from Linux namespaces and needs root::

    ip netns add fbA-<pid>-<k>                 the host's network namespace (named, so
                                               `ip -n` and `ip netns list` see it)
    ip link add veth-a netns fbA-.. type veth peer name veth-b netns fbB-..
                                               the wire between the two hosts, created
                                               straight inside them: its ends never exist in
                                               the machine's namespace, so no name can clash
    the anchor, one long-lived process per host:
      ip netns exec fbA-.. unshare --mount --uts --propagation private -- sh -c
        'mount -t tmpfs fbshm-fbA-.. /dev/shm; mount -t tmpfs fbrun-fbA-.. RUNTIME_DIR;
         hostname NAME; exec sleep infinity'
    every process started in the host:
      nsenter --target <anchor> --mount --net --uts --wd=<cwd> -- ARGS

The anchor owns the host's mount namespace, in which a fresh tmpfs is mounted over
``/dev/shm`` (propagation private: the machine never sees it). A process started in the
host joins the anchor's namespaces, so all the processes of one host share one ``/dev/shm``
(a producer and a local subscriber see the same rings), while the other host and the
machine each have another. Unix sockets live in the file system, which the hosts otherwise
share (/tmp included, handy for scripts and output files), so each host also gets its own
``FRAMEBUS_RUNTIME_DIR``: a temporary directory, a 0700 tmpfs of its own mounted on it
inside the host, so its ipc sockets cannot be reached from the other host or the machine
(they see an empty directory there). And its name, both as ``FRAMEBUS_HOST`` and as its
hostname (a UTS namespace of its own).

The addresses, 10.213.<n>.1/24 and .2/24, exist only inside the two namespaces: the
machine's own routing never leads to them, and parallel runs cannot clash even when they
pick the same ``n``. Every port is free in a fresh host, and each has its own 127.0.0.1.

Usage (a broker and a producer on A, a consumer on B)::

    from framebus.testing.netns import PYTHON, TwoHosts

    with TwoHosts() as (a, b):
        env = {"FRAMEBUS_BROKER": f"tcp://{a.address}:5555"}
        a.popen([PYTHON, "-m", "framebus", "broker", "--bind", env["FRAMEBUS_BROKER"]])
        a.popen([PYTHON, "-m", "framebus", "testsrc", "cam"], env=env)
        done = b.run([PYTHON, "tests/consumer.py", "cam", "--frames", "10"], env=env,
                     timeout=30)
        assert done.returncode == 0, done.stderr
        a.link_down(); ...; a.link_up()          # the network goes away and comes back

The test suite's ``two_hosts`` fixture (tests/conftest.py) yields ``(a, b)`` of such a
pair, and skips where :func:`netns_available` says no. ``a.shm`` is A's /dev/shm seen from
the test process; ``a.pids()`` the processes running in A. One host is a
:class:`~framebus.testing.host.Host`; the commands and /proc lookups are in
:mod:`framebus.testing.linux`. Nothing here needs pytest.

Teardown (always, also on failure or KeyboardInterrupt) terminates every process started in
the hosts (SIGTERM to their process groups and to anything else found in the hosts'
namespaces, SIGKILL after a short grace), unmounts the tmpfs's, kills the anchors, deletes the
veth and the namespaces and removes the runtime directories. Whatever a crashed earlier run
of this scheme left (namespaces, processes, directories, all named ``fb<letter>-<pid>-<k>``
after the pid of the run that made them) is removed before the first hosts are made, if
that run's process is gone; nothing else is touched. The anchors also die with the process
that made them (PR_SET_PDEATHSIG), so a test run killed outright leaves no anchor behind.
"""

from __future__ import annotations

import atexit
import functools
import itertools
import os
import re
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from collections.abc import Iterator
from pathlib import Path

from framebus.testing import linux
from framebus.testing.host import Host
from framebus.testing.linux import MARK, NETNS_DIR, RUN_SOURCE, SHM_SOURCE, TOOLS, NetnsError, which

__all__ = ["MARK", "NETNS_DIR", "PYTHON", "Host", "NetnsError", "TwoHosts", "cleanup_stale",
           "netns_available", "read_line"]

#: The interpreter running the tests (the project's venv python under `make test`).
PYTHON = sys.executable

SUBNET = "10.213"
_NAME = re.compile(r"^fb[A-Z]-(\d+)-(\d+)$")  # namespaces: fbA-<owner pid>-<k>
_RUN_DIR = re.compile(r"^(fb[A-Z]-\d+-\d+)-run-")  # runtime dirs: fbA-<pid>-<k>-run-XXXX
_counter = itertools.count()
_open: weakref.WeakSet[TwoHosts] = weakref.WeakSet()
_lock = threading.Lock()


# --- availability -------------------------------------------------------------------------

@functools.cache
def netns_available() -> tuple[bool, str]:
    """Whether this machine can make the hosts, and if not why (computed once).

    Needs Linux, root, the commands (iproute2, util-linux), and a kernel that lets us add a
    network namespace, a veth in it and a tmpfs in a new mount namespace: all are tried.
    """
    if sys.platform != "linux":
        return False, f"network namespaces need Linux, not {sys.platform}"
    if os.geteuid() != 0:
        return False, f"network namespaces need root (running as uid {os.geteuid()})"
    missing = sorted({TOOLS[t] for t in TOOLS if which(t) is None})
    if missing:
        return False, f"commands missing: apt-get install {' '.join(missing)}"
    try:
        _cleanup_stale_once()
        probe = f"fbP-{os.getpid()}-{next(_counter)}"
        linux.ip("netns", "add", probe)
        try:
            linux.ip("-n", probe, "link", "add", "veth-a", "type", "veth", "peer", "name", "veth-b")
            proc = subprocess.run(
                [linux.tool("ip"), "netns", "exec", probe, linux.tool("unshare"), "--mount",
                 "--uts", "--propagation", "private", "--", linux.tool("sh"), "-c",
                 "mount -t tmpfs fbprobe /dev/shm"], capture_output=True, text=True, timeout=10)
            if proc.returncode != 0:
                raise NetnsError(f"mount namespace with a tmpfs: {proc.stderr.strip()}")
        finally:
            linux.ip("netns", "del", probe, check=False)
    except (NetnsError, OSError, subprocess.SubprocessError) as exc:
        return False, f"cannot make network namespaces here: {exc}"
    return True, "network namespaces available"


def cleanup_stale() -> list[str]:
    """Removes what earlier runs of this scheme left behind; returns what it removed.

    A namespace ``fb<letter>-<pid>-<k>``, a process marked with such a name, or a directory
    ``fb<letter>-<pid>-<k>-run-*`` in the temporary directory is stale when process <pid>
    no longer exists (or is this process, which has not made it). Everything else, other
    runs still going included, is left alone.
    """
    with _lock:
        mine = {h.netns for hosts in list(_open) for h in hosts}

    def stale(name: str) -> bool:
        m = _NAME.match(name)
        if not m or name in mine:
            return False
        owner = int(m[1])
        return owner == os.getpid() or not linux.pid_alive(owner)

    removed, killed = [], set()
    for pid, name in linux.marked_processes():
        if stale(name):
            linux.kill(pid, signal.SIGKILL)
            killed.add(pid)
            removed.append(f"process {pid} of {name}")
    if NETNS_DIR.is_dir():
        for entry in NETNS_DIR.iterdir():
            if stale(entry.name):
                for pid in set(linux.pids_in_netns(linux.ns_id(entry))) - killed:
                    linux.kill(pid, signal.SIGKILL)
                    removed.append(f"process {pid} in {entry.name}")
                linux.ip("netns", "del", entry.name, check=False)
                removed.append(f"netns {entry.name}")
    tmp = Path(tempfile.gettempdir())
    for entry in tmp.iterdir():
        m = _RUN_DIR.match(entry.name)
        if m and stale(m[1]) and entry.is_dir():
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(f"directory {entry}")
    return removed


@functools.cache
def _cleanup_stale_once() -> None:
    cleanup_stale()


# --- two hosts --------------------------------------------------------------------------------

class TwoHosts:
    """Two hosts, ``a`` and ``b``, joined by a veth pair: made on entry, removed on exit.

    ``with TwoHosts() as (a, b): ...``. *names* are the hosts' FRAMEBUS_HOST and hostnames;
    *shm_size* caps each host's /dev/shm (tmpfs size=, e.g. "64m"; default: half the RAM,
    like the machine's); *grace* is how long teardown waits after SIGTERM before SIGKILL.
    """

    def __init__(self, names: tuple[str, str] = ("host-a", "host-b"),
                 shm_size: str | None = None, grace: float = 1.0) -> None:
        pid, k = os.getpid(), next(_counter)
        n = (pid + k) % 254 + 1
        self.a = Host(names[0], f"fbA-{pid}-{k}", "veth-a", f"{SUBNET}.{n}.1", 24)
        self.b = Host(names[1], f"fbB-{pid}-{k}", "veth-b", f"{SUBNET}.{n}.2", 24)
        self.shm_size = shm_size
        self.grace = grace
        self.started = False
        self.closed = False

    @property
    def hosts(self) -> tuple[Host, Host]:
        return self.a, self.b

    def __iter__(self) -> Iterator[Host]:
        return iter(self.hosts)

    def __enter__(self) -> TwoHosts:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    def start(self) -> TwoHosts:
        if self.started:
            raise NetnsError("already started")
        self.started = True
        _cleanup_stale_once()
        with _lock:
            _open.add(self)
        try:
            a, b = self.hosts
            for host in self.hosts:
                linux.ip("netns", "add", host.netns)
                host.runtime_dir = Path(tempfile.mkdtemp(prefix=f"{host.netns}-run-"))
            linux.ip("link", "add", a.iface, "netns", a.netns, "type", "veth",
                "peer", "name", b.iface, "netns", b.netns)
            for host in self.hosts:
                linux.ip("-n", host.netns, "-batch", "-", input=(
                    f"address add {host.address}/{host.prefixlen} dev {host.iface}\n"
                    f"link set dev lo up\n"
                    f"link set dev {host.iface} up\n"))
            for host in self.hosts:
                host._start_anchor(self.shm_size)
            deadline = time.monotonic() + 10
            for host in self.hosts:
                host._await_anchor(deadline)
            for host in self.hosts:
                host._wait_link_up(deadline)
        except BaseException:
            self.close(check=False)
            raise
        return self

    def close(self, check: bool = True) -> None:
        """Removes everything; idempotent. Raises NetnsError if anything is left after."""
        if self.closed:
            return
        self.closed = True
        for host in self.hosts:
            host._closed = True
        steps = [self._stop_processes]
        steps += [host._stop_anchor for host in self.hosts]
        steps += [self._delete_network]
        steps += [functools.partial(shutil.rmtree, h.runtime_dir, ignore_errors=True)
                  for h in self.hosts if h.runtime_dir]
        first: BaseException | None = None
        for step in steps:  # each step runs, whatever the ones before it did (^C included)
            try:
                step()
            except BaseException as exc:  # noqa: BLE001 - re-raised below
                first = first or exc
        with _lock:
            _open.discard(self)
        if first is not None:
            raise first
        if check:
            left = self.leftovers()
            if left:
                raise NetnsError(f"teardown left behind: {'; '.join(left)}")

    def _stop_processes(self) -> None:
        for host in self.hosts:
            host._signal(signal.SIGTERM)
        deadline = time.monotonic() + self.grace
        while any(h._running() for h in self.hosts) and time.monotonic() < deadline:
            time.sleep(0.02)
        deadline = time.monotonic() + 10
        while sum(h._signal(signal.SIGKILL) for h in self.hosts):
            if time.monotonic() > deadline:
                raise NetnsError(f"processes survive SIGKILL: {[h.pids() for h in self.hosts]}")
            time.sleep(0.01)
        for host in self.hosts:
            host._reap()

    def _delete_network(self) -> None:
        names = {entry.name for entry in NETNS_DIR.iterdir()} if NETNS_DIR.is_dir() else set()
        if self.a.netns in names:  # deleting one end deletes the pair, now rather than later
            linux.ip("-n", self.a.netns, "link", "del", "dev", self.a.iface, check=False)
        for host in self.hosts:
            if host.netns in names:
                linux.ip("netns", "del", host.netns)

    def leftovers(self) -> list[str]:
        """What of these hosts still exists: namespaces, processes, mounts, directories."""
        names = {h.netns for h in self.hosts}
        netns_ids: dict[linux.NsId | None, str] = {
            h._netns_id: h.netns for h in self.hosts if h._netns_id is not None}
        sources = {src + n for n in names for src in (SHM_SOURCE, RUN_SOURCE)}
        left = {f"netns {n}" for n in names if (NETNS_DIR / n).exists()}
        left |= {f"directory {h.runtime_dir}" for h in self.hosts
                 if h.runtime_dir is not None and h.runtime_dir.exists()}
        mount_namespaces = set()
        for pid in linux.proc_pids():  # one pass over /proc
            mark, net = linux.mark_of(pid), linux.ns_id(f"/proc/{pid}/ns/net")
            if mark in names or net in netns_ids:
                left.add(f"process {pid} of {mark or netns_ids[net]}")
            mnt = linux.ns_id(f"/proc/{pid}/ns/mnt")
            if mnt is not None and mnt not in mount_namespaces:  # one mountinfo per namespace
                mount_namespaces.add(mnt)
                left |= {f"tmpfs {src} still mounted (seen by process {pid})"
                         for src in linux.mount_sources(pid) & sources}
        return sorted(left)


def read_line(proc: subprocess.Popen, timeout: float) -> str:
    """The next line *proc* prints on its stdout (a pipe), waiting at most *timeout* s.

    Reads the pipe byte by byte, never past the newline, so it can be called again, and
    proc.communicate() afterwards gets the rest. Raises AssertionError on timeout or when
    the process closes its stdout first.
    """
    if proc.stdout is None:
        raise ValueError("read_line needs a process started with stdout=subprocess.PIPE")
    fd = proc.stdout.fileno()
    deadline = time.monotonic() + timeout
    line = b""
    with selectors.DefaultSelector() as sel:
        sel.register(fd, selectors.EVENT_READ)
        while not line.endswith(b"\n"):
            left = deadline - time.monotonic()
            if left <= 0 or not sel.select(left):
                raise AssertionError(f"no line from {proc.args!r} in {timeout} s (got {line!r})")
            byte = os.read(fd, 1)
            if not byte:
                raise AssertionError(f"{proc.args!r} ended its output before a line (got {line!r})")
            line += byte
    return line.decode()


@atexit.register
def _close_all() -> None:
    with _lock:
        remaining = list(_open)
    for hosts in remaining:
        try:
            hosts.close(check=False)
        except BaseException:  # noqa: BLE001 - exiting anyway
            pass
