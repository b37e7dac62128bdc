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

    from netns import PYTHON, read_line, two_hosts   # two_hosts: a pytest fixture

    def test_remote(two_hosts):
        a, b = two_hosts
        env = {"FRAMEBUS_BROKER": f"tcp://{a.address}:5555"}
        a.popen([PYTHON, "-m", "framebus", "broker", "--bind", env["FRAMEBUS_BROKER"]])
        a.popen([PYTHON, "-m", "framebus", "testsrc", "cam"], env=env)
        done = b.run([PYTHON, "tests/consumer.py", "cam", "--frames", "10"], env=env,
                     timeout=30)
        assert done.returncode == 0, done.stderr
        a.link_down(); ...; a.link_up()          # the network goes away and comes back

or, outside pytest's fixtures, ``with TwoHosts() as (a, b): ...``. ``a.shm`` is A's
/dev/shm seen from the test process; ``a.pids()`` the processes running in A.

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
import ctypes
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
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import pytest

#: The interpreter running the tests (the project's venv python under `make test`).
PYTHON = sys.executable

NETNS_DIR = Path("/run/netns")
SUBNET = "10.213"
#: Set in the environment of every process this module starts in a host (the anchors
#: included), to the host's namespace name: how leftovers are recognised, even orphaned.
MARK = "FRAMEBUS_TEST_NETNS"
# The tmpfs's of host fbA-1-0 are mounted with sources fbshm-fbA-1-0 and fbrun-fbA-1-0.
SHM_SOURCE, RUN_SOURCE = "fbshm-", "fbrun-"

_NAME = re.compile(r"^fb[A-Z]-(\d+)-(\d+)$")  # namespaces: fbA-<owner pid>-<k>
_RUN_DIR = re.compile(r"^(fb[A-Z]-\d+-\d+)-run-")  # runtime dirs: fbA-<pid>-<k>-run-XXXX
_counter = itertools.count()
_open: weakref.WeakSet[TwoHosts] = weakref.WeakSet()
_lock = threading.Lock()

TOOLS = {"ip": "iproute2", "unshare": "util-linux", "nsenter": "util-linux",
         "mount": "mount", "umount": "mount", "sh": "dash", "sleep": "coreutils"}


class NetnsError(RuntimeError):
    """A namespace could not be made or removed."""


def _which(tool: str) -> str | None:
    # root's PATH does not always hold the sbin directories (ip is /usr/sbin/ip on Debian)
    return shutil.which(tool) or shutil.which(tool, path="/usr/sbin:/sbin:/usr/bin:/bin")


@functools.cache
def _tool(name: str) -> str:
    path = _which(name)
    if path is None:
        raise NetnsError(f"{name} not found: apt-get install {TOOLS.get(name, name)}")
    return path


def _ip(*args: str, input: str | None = None, check: bool = True) -> str:
    proc = subprocess.run([_tool("ip"), *args], input=input, capture_output=True, text=True,
                          timeout=10)
    if check and proc.returncode != 0:
        raise NetnsError(f"ip {' '.join(args)}: {proc.stderr.strip() or proc.returncode}")
    return proc.stdout


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
    missing = sorted({TOOLS[t] for t in TOOLS if _which(t) is None})
    if missing:
        return False, f"commands missing: apt-get install {' '.join(missing)}"
    try:
        _cleanup_stale_once()
        probe = f"fbP-{os.getpid()}-{next(_counter)}"
        _ip("netns", "add", probe)
        try:
            _ip("-n", probe, "link", "add", "veth-a", "type", "veth", "peer", "name", "veth-b")
            proc = subprocess.run(
                [_tool("ip"), "netns", "exec", probe, _tool("unshare"), "--mount", "--uts",
                 "--propagation", "private", "--", _tool("sh"), "-c",
                 "mount -t tmpfs fbprobe /dev/shm"], capture_output=True, text=True, timeout=10)
            if proc.returncode != 0:
                raise NetnsError(f"mount namespace with a tmpfs: {proc.stderr.strip()}")
        finally:
            _ip("netns", "del", probe, check=False)
    except (NetnsError, OSError, subprocess.SubprocessError) as exc:
        return False, f"cannot make network namespaces here: {exc}"
    return True, "network namespaces available"


def require_netns() -> None:
    """Skips the calling test, saying why, when this machine cannot make the hosts."""
    ok, why = netns_available()
    if not ok:
        pytest.skip(why)


# --- processes and namespaces, found through /proc -----------------------------------------

def _pid_alive(pid: int) -> bool:
    """Whether process *pid* exists and is not a zombie (dead, waiting to be reaped)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def _proc_pids() -> Iterator[int]:
    me = os.getpid()
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != me:
            yield int(entry)


def _ns_id(path: str | Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:  # gone, or a zombie (whose namespaces are already released)
        return None
    return st.st_dev, st.st_ino


def _pids_in_netns(netns_id: tuple[int, int] | None) -> list[int]:
    """Live processes whose network namespace is *netns_id*."""
    if netns_id is None:
        return []
    return [pid for pid in _proc_pids() if _ns_id(f"/proc/{pid}/ns/net") == netns_id]


def _mark_of(pid: int) -> str | None:
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


def _marked_processes() -> list[tuple[int, str]]:
    """(pid, host namespace) of every live process carrying MARK in its environment."""
    return [(pid, mark) for pid in _proc_pids() if (mark := _mark_of(pid))]


def _mount_sources(pid: int) -> set[str]:
    """The sources of the mounts that process *pid* sees."""
    try:
        text = Path(f"/proc/{pid}/mountinfo").read_text()
    except OSError:
        return set()
    # "36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw": source after " - fs"
    return {fields[1] for line in text.splitlines()
            if len(fields := line.split(" - ", 1)[-1].split()) > 1}


def _kill(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _killpg(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _die_with_parent() -> None:
    """preexec_fn: SIGKILL this child when the process that started it dies."""
    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


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
        return owner == os.getpid() or not _pid_alive(owner)

    removed, killed = [], set()
    for pid, name in _marked_processes():
        if stale(name):
            _kill(pid, signal.SIGKILL)
            killed.add(pid)
            removed.append(f"process {pid} of {name}")
    if NETNS_DIR.is_dir():
        for entry in NETNS_DIR.iterdir():
            if stale(entry.name):
                for pid in set(_pids_in_netns(_ns_id(entry))) - killed:
                    _kill(pid, signal.SIGKILL)
                    removed.append(f"process {pid} in {entry.name}")
                _ip("netns", "del", entry.name, check=False)
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


# --- hosts ----------------------------------------------------------------------------------

class Host:
    """One host: a network namespace, a private /dev/shm, a runtime dir and a name.

    Made and removed by :class:`TwoHosts`. Attributes: ``name`` (its FRAMEBUS_HOST and
    hostname), ``netns`` (the namespace, for ``ip -n``), ``address`` (its IPv4 address on
    the wire), ``iface`` (its end of the wire), ``runtime_dir`` (its FRAMEBUS_RUNTIME_DIR:
    a tmpfs of its own inside the host, an empty directory elsewhere), ``anchor_pid``.
    """

    def __init__(self, name: str, netns: str, iface: str, address: str, prefixlen: int) -> None:
        self.name = name
        self.netns = netns
        self.iface = iface
        self.address = address
        self.prefixlen = prefixlen
        self.runtime_dir: Path | None = None
        self.anchor_pid: int | None = None
        self._anchor: subprocess.Popen | None = None
        self._netns_id: tuple[int, int] | None = None
        self._procs: list[subprocess.Popen] = []
        self._closed = False

    def __repr__(self) -> str:
        return f"<Host {self.name} {self.address} netns={self.netns}>"

    @property
    def env(self) -> dict[str, str]:
        """What this host adds to the environment of the processes started in it."""
        return {"FRAMEBUS_HOST": self.name, "FRAMEBUS_RUNTIME_DIR": str(self.runtime_dir)}

    def view(self, path: str | os.PathLike) -> Path:
        """*path* as this host sees it, from the test process (through the anchor's root):
        e.g. ``a.view(a.runtime_dir)`` holds A's sockets, which the machine cannot see."""
        if self.anchor_pid is None or self._closed:
            raise NetnsError(f"{self} is not running")
        return Path(f"/proc/{self.anchor_pid}/root") / Path(path).relative_to("/")

    @property
    def shm(self) -> Path:
        """This host's /dev/shm, seen from the test process: its segments, no process needed."""
        return self.view("/dev/shm")

    # -- running things in the host --

    def popen(self, args: Sequence[str | os.PathLike] | str, env: Mapping[str, str] | None = None,
              **kw) -> subprocess.Popen:
        """Starts *args* in this host, in a session of its own; killed at teardown.

        The environment is os.environ, then this host's :attr:`env`, then *env*; the
        working directory is *cwd* or the caller's. Other keywords go to
        :class:`subprocess.Popen` (stdout=..., text=...). nsenter execs *args* without
        forking, so the Popen's pid, signals and returncode are the program's own.
        """
        if self._closed or self._anchor is None:
            raise NetnsError(f"{self} is not running")
        for key in ("start_new_session", "process_group", "preexec_fn", "executable"):
            if key in kw:
                raise TypeError(f"Host.popen sets {key} itself")
        if isinstance(args, (str, os.PathLike)):
            args = [args]
        argv = [os.fspath(a) for a in args]
        cwd = os.path.abspath(os.fspath(kw.get("cwd") or os.getcwd()))
        cmd = [_tool("nsenter"), f"--target={self.anchor_pid}", "--mount", "--net", "--uts",
               f"--wd={cwd}", "--", *argv]
        full_env = {**os.environ, **self.env, **(env or {}), MARK: self.netns}
        proc = subprocess.Popen(cmd, env=full_env, start_new_session=True, **kw)
        self._procs.append(proc)
        return proc

    def run(self, args: Sequence[str | os.PathLike] | str, timeout: float = 30.0, *,
            env: Mapping[str, str] | None = None, input: str | bytes | None = None,
            check: bool = False, **kw) -> subprocess.CompletedProcess:
        """Runs *args* in this host to completion; stdout and stderr captured, as text.

        On timeout the process group is killed and TimeoutExpired raised.
        """
        kw.setdefault("stdout", subprocess.PIPE)
        kw.setdefault("stderr", subprocess.PIPE)
        kw.setdefault("text", True)
        if input is not None:
            kw["stdin"] = subprocess.PIPE
        argv = [os.fspath(args)] if isinstance(args, (str, os.PathLike)) else [
            os.fspath(a) for a in args]
        proc = self.popen(argv, env=env, **kw)
        try:
            out, err = proc.communicate(input, timeout=timeout)
        except subprocess.TimeoutExpired:
            _killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate()
            raise subprocess.TimeoutExpired(argv, timeout, out, err) from None
        except BaseException:
            _killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise
        result = subprocess.CompletedProcess(argv, proc.returncode, out, err)
        if check:
            result.check_returncode()
        return result

    def exec_ip(self, *args: str) -> str:
        """``ip -n <netns> ARGS`` (from the machine, not as a host process); its stdout."""
        return _ip("-n", self.netns, *args)

    def link_down(self) -> None:
        """Takes this host's end of the wire down: the network between the hosts is gone.

        The other host's packets to this one vanish (connects time out, established
        connections stall); this host has no route to the other (ENETUNREACH).
        """
        self.exec_ip("link", "set", "dev", self.iface, "down")

    def link_up(self, wait: float = 5.0) -> None:
        """Brings this host's end of the wire back up (address and route come back), and
        waits until it carries packets again (operstate UP), for at most *wait* seconds."""
        self.exec_ip("link", "set", "dev", self.iface, "up")
        if wait:
            self._wait_link_up(time.monotonic() + wait)

    def _wait_link_up(self, deadline: float) -> None:
        # The kernel turns carrier on asynchronously (linkwatch): until then packets are dropped
        while "state UP" not in self.exec_ip("-o", "link", "show", "dev", self.iface):
            if time.monotonic() > deadline:
                raise NetnsError(f"{self}: {self.iface} does not come up")
            time.sleep(0.005)

    def pids(self) -> list[int]:
        """Live processes in this host (its network namespace), the anchor excluded."""
        return [p for p in _pids_in_netns(self._netns_id) if p != self.anchor_pid]

    # -- life cycle, driven by TwoHosts --

    def _start_anchor(self, shm_size: str | None) -> None:
        options = "mode=1777,nosuid,nodev" + (f",size={shm_size}" if shm_size else "")
        script = ('set -e; mount -t tmpfs -o "$1" "$2" /dev/shm; '
                  'mount -t tmpfs -o mode=0700,nosuid,nodev,size=16m "$3" "$4"; '
                  'printf %s "$5" > /proc/sys/kernel/hostname; '
                  'echo "ready $$"; exec sleep infinity')
        self._anchor = subprocess.Popen(
            [_tool("ip"), "netns", "exec", self.netns,
             _tool("unshare"), "--mount", "--uts", "--propagation", "private", "--",
             _tool("sh"), "-c", script, "anchor", options, SHM_SOURCE + self.netns,
             RUN_SOURCE + self.netns, str(self.runtime_dir), self.name],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env={**os.environ, MARK: self.netns}, start_new_session=True,
            preexec_fn=_die_with_parent)

    def _await_anchor(self, deadline: float) -> None:
        anchor = self._anchor
        line = b""
        with selectors.DefaultSelector() as sel:
            sel.register(anchor.stdout, selectors.EVENT_READ)
            while not line.endswith(b"\n"):
                left = deadline - time.monotonic()
                if left <= 0 or not sel.select(left):
                    raise NetnsError(f"{self}: anchor not ready in time")
                chunk = os.read(anchor.stdout.fileno(), 100)
                if not chunk:
                    anchor.wait(5)
                    err = anchor.stderr.read().decode(errors="replace").strip()
                    raise NetnsError(f"{self}: anchor failed ({anchor.returncode}): {err}")
                line += chunk
        anchor.stdout.close()
        anchor.stderr.close()
        word, pid = line.split()
        self.anchor_pid = int(pid)
        self._netns_id = _ns_id(NETNS_DIR / self.netns)
        if _ns_id(f"/proc/{self.anchor_pid}/ns/net") != self._netns_id:
            raise NetnsError(f"{self}: anchor {self.anchor_pid} is not in {self.netns}")

    def _signal(self, sig: int) -> int:
        """Signals every process of this host, anchor excepted; returns how many there were."""
        count = 0
        for proc in self._procs:
            if proc.poll() is None:  # not reaped yet, so its pid is still its group's
                _killpg(proc.pid, sig)
                count += 1
        for pid in self.pids():  # whatever left its group, or outlived its leader
            _kill(pid, sig)
            count += 1
        return count

    def _running(self) -> bool:
        return any(p.poll() is None for p in self._procs) or bool(self.pids())

    def _reap(self) -> None:
        for proc in self._procs:
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                pass
            for stream in (proc.stdin, proc.stdout, proc.stderr):
                if stream:
                    try:
                        stream.close()
                    except OSError:
                        pass

    def _stop_anchor(self) -> None:
        anchor = self._anchor
        if anchor is None:
            return
        if anchor.poll() is None and self.anchor_pid is not None:
            subprocess.run([_tool("nsenter"), f"--target={self.anchor_pid}", "--mount", "--",
                            _tool("umount"), "--lazy", "/dev/shm", str(self.runtime_dir)],
                           capture_output=True, timeout=10)
        if anchor.poll() is None:  # not reaped, so its group id is still its own
            _killpg(anchor.pid, signal.SIGKILL)
            anchor.wait(10)
        for stream in (anchor.stdout, anchor.stderr):
            if stream and not stream.closed:
                stream.close()


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
                _ip("netns", "add", host.netns)
                host.runtime_dir = Path(tempfile.mkdtemp(prefix=f"{host.netns}-run-"))
            _ip("link", "add", a.iface, "netns", a.netns, "type", "veth",
                "peer", "name", b.iface, "netns", b.netns)
            for host in self.hosts:
                _ip("-n", host.netns, "-batch", "-", input=(
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
            _ip("-n", self.a.netns, "link", "del", "dev", self.a.iface, check=False)
        for host in self.hosts:
            if host.netns in names:
                _ip("netns", "del", host.netns)

    def leftovers(self) -> list[str]:
        """What of these hosts still exists: namespaces, processes, mounts, directories."""
        names = {h.netns for h in self.hosts}
        netns_ids = {h._netns_id: h.netns for h in self.hosts if h._netns_id is not None}
        sources = {src + n for n in names for src in (SHM_SOURCE, RUN_SOURCE)}
        left = {f"netns {n}" for n in names if (NETNS_DIR / n).exists()}
        left |= {f"directory {h.runtime_dir}" for h in self.hosts
                 if h.runtime_dir is not None and h.runtime_dir.exists()}
        mount_namespaces = set()
        for pid in _proc_pids():  # one pass over /proc
            mark, net = _mark_of(pid), _ns_id(f"/proc/{pid}/ns/net")
            if mark in names or net in netns_ids:
                left.add(f"process {pid} of {mark or netns_ids[net]}")
            mnt = _ns_id(f"/proc/{pid}/ns/mnt")
            if mnt is not None and mnt not in mount_namespaces:  # one mountinfo per namespace
                mount_namespaces.add(mnt)
                left |= {f"tmpfs {src} still mounted (seen by process {pid})"
                         for src in _mount_sources(pid) & sources}
        return sorted(left)


def read_line(proc: subprocess.Popen, timeout: float) -> str:
    """The next line *proc* prints on its stdout (a pipe), waiting at most *timeout* s.

    Reads the pipe byte by byte, never past the newline, so it can be called again, and
    proc.communicate() afterwards gets the rest. Raises AssertionError on timeout or when
    the process closes its stdout first.
    """
    fd = proc.stdout.fileno()
    deadline = time.monotonic() + timeout
    line = b""
    with selectors.DefaultSelector() as sel:
        sel.register(fd, selectors.EVENT_READ)
        while not line.endswith(b"\n"):
            left = deadline - time.monotonic()
            if left <= 0 or not sel.select(left):
                raise AssertionError(f"no line from {proc.args} in {timeout} s (got {line!r})")
            byte = os.read(fd, 1)
            if not byte:
                raise AssertionError(f"{proc.args} ended its output before a line (got {line!r})")
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


@pytest.fixture
def two_hosts() -> Iterator[tuple[Host, Host]]:
    """Two fresh hosts (a, b) joined by a wire; skips where namespaces cannot be made."""
    require_netns()
    with TwoHosts() as hosts:
        yield hosts.a, hosts.b
