"""The two-host harness itself (framebus/testing/netns.py): real namespaces, real processes.

Each test shows one property the remote tests rely on: the hosts reach each other over the
wire and nothing else does; each host has its own /dev/shm, shared by all its processes;
the wire can be cut and mended; ZeroMQ and a whole local framebus work inside each host;
teardown and the removal of stale leftovers leave nothing behind and touch nothing else.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
from conftest import TESTS, free_port, require_netns, result_of, wait_until

from framebus import config
from framebus.testing import netns
from framebus.testing.netns import (
    MARK,
    NETNS_DIR,
    PYTHON,
    TwoHosts,
    cleanup_stale,
    netns_available,
    read_line,
)

IP = shutil.which("ip") or "/usr/sbin/ip"

# Answers each client "<its hostname> to <client address>: <what the client sent>"; on an
# address and port, or on a Unix socket when the address is a path.
SERVER = """
import socket, sys
where, port, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
if where.startswith("/"):
    srv = socket.socket(socket.AF_UNIX)
    srv.bind(where)
    srv.listen()
else:
    srv = socket.create_server((where, port))
print("listening", flush=True)
for _ in range(count):
    conn, peer = srv.accept()
    with conn:
        peer = peer[0] if isinstance(peer, tuple) else "unix"
        conn.sendall(f"{socket.gethostname()} to {peer}: ".encode() + conn.recv(100))
"""

CLIENT = """
import socket, sys
where, port, timeout = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
try:
    if where.startswith("/"):
        s = socket.socket(socket.AF_UNIX)
        s.settimeout(timeout)
        s.connect(where)
    else:
        s = socket.create_connection((where, port), timeout=timeout)
    with s:
        s.sendall(b"ping")
        print(s.recv(100).decode())
except OSError as exc:
    print(f"failed: {exc!r}")
    sys.exit(1)
"""

SHM = """
import mmap, os, sys, posix_ipc
op, name = sys.argv[1], sys.argv[2]
print(os.stat("/dev/shm").st_dev, end=" ")
if op == "create":
    seg = posix_ipc.SharedMemory(name, posix_ipc.O_CREX, size=4096)
    with mmap.mmap(seg.fd, 4096) as m:
        m[:len(sys.argv[3])] = sys.argv[3].encode()
    print("created")
else:
    try:
        seg = posix_ipc.SharedMemory(name)
    except posix_ipc.ExistentialError:
        print("absent")
    else:
        with mmap.mmap(seg.fd, 4096, prot=mmap.PROT_READ) as m:
            print("read", m[:20].rstrip(b"\\0").decode())
"""


def serve(host, address: str, port: int, count: int = 1) -> subprocess.Popen:
    proc = host.popen([PYTHON, "-c", SERVER, address, str(port), str(count)],
                      stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert read_line(proc, 10) == "listening\n"
    return proc


def connect(host, address: str, port: int, timeout: float = 2.0) -> str:
    """Connects from *host* to address:port; the server's answer, or 'failed: ...'."""
    return host.run([PYTHON, "-c", CLIENT, address, str(port), str(timeout)],
                    timeout=timeout + 10).stdout.strip()


def connect_from_machine(address: str, port: int) -> str:
    """Like connect(), from the test process, in the machine's own namespaces."""
    try:
        with socket.create_connection((address, port), timeout=0.3) as s:
            s.sendall(b"ping")
            return s.recv(100).decode() or "closed"
    except OSError as exc:
        return f"failed: {exc!r}"


def test_each_host_has_its_own_name_address_runtime_dir_and_empty_shm(two_hosts):
    a, b = two_hosts
    script = ("import json, os, socket; print(json.dumps({'host': os.environ['FRAMEBUS_HOST'],"
              " 'hostname': socket.gethostname(), 'run': os.environ['FRAMEBUS_RUNTIME_DIR'],"
              " 'cwd': os.getcwd(), 'shm': os.listdir('/dev/shm'), 'extra': os.environ['X'],"
              " 'run_mode': oct(os.stat(os.environ['FRAMEBUS_RUNTIME_DIR']).st_mode & 0o777)}))")
    seen = {}
    for host in (a, b):
        seen[host.name] = json.loads(host.run([PYTHON, "-c", script], env={"X": host.name},
                                              check=True).stdout)
        assert seen[host.name] == {"host": host.name, "hostname": host.name,
                                   "run": str(host.runtime_dir), "cwd": os.getcwd(),
                                   "shm": [], "extra": host.name, "run_mode": "0o700"}
        assert f"inet {host.address}/24" in host.exec_ip("-o", "addr", "show", "dev", host.iface)
        assert "state UP" in host.exec_ip("-o", "link", "show", "dev", host.iface)
    assert a.name != b.name and a.runtime_dir != b.runtime_dir and a.netns != b.netns
    assert a.address.rsplit(".", 1)[0] == b.address.rsplit(".", 1)[0]  # one /24, two ends
    assert socket.gethostname() not in (a.name, b.name)  # the machine's own name is untouched


def test_b_reaches_a_over_the_wire_and_nothing_else_does(two_hosts):
    a, b = two_hosts
    port = 7000  # fresh namespaces: every port is free
    server = serve(a, a.address, port)
    # The hosts' addresses exist only inside them: the machine routes A's elsewhere (its
    # default route; an upstream proxy there may even accept the connection), never to A.
    assert a.address not in subprocess.run([IP, "-o", "addr"], capture_output=True,
                                           text=True, check=True).stdout
    assert "veth" not in subprocess.run([IP, "route", "get", a.address], capture_output=True,
                                        text=True).stdout
    assert not connect_from_machine(a.address, port).startswith(a.name)
    # The server's one and only client is B, from B's address: the machine never got in.
    assert connect(b, a.address, port) == f"{a.name} to {b.address}: ping"
    assert server.wait(5) == 0


def test_a_host_loopback_is_its_own(two_hosts):
    a, b = two_hosts
    port = free_port()  # free on the machine's loopback, so a refusal there proves something
    server = serve(a, "127.0.0.1", port, count=1)
    assert "ConnectionRefused" in connect(b, "127.0.0.1", port)
    assert "ConnectionRefused" in connect_from_machine("127.0.0.1", port)
    assert connect(a, "127.0.0.1", port) == f"{a.name} to 127.0.0.1: ping"
    assert server.wait(5) == 0


def test_runtime_dir_is_private_to_its_host(two_hosts):
    """The ipc sockets of a host's producers cannot be reached from the other host."""
    a, b = two_hosts
    path = str(a.runtime_dir / "cam.sock")
    serve(a, path, 0, count=1)
    assert "FileNotFoundError" in connect(b, path, 0)  # B has its own, empty, runtime dir
    assert not os.path.exists(path)  # and so has the machine
    assert (a.view(a.runtime_dir) / "cam.sock").is_socket()
    assert connect(a, path, 0) == f"{a.name} to unix: ping"


def test_dev_shm_is_shared_within_a_host_and_private_to_it(two_hosts):
    a, b = two_hosts
    name = f"/fbnetns-test-{os.getpid()}"
    machine_dev = os.stat("/dev/shm").st_dev

    def shm(host, *args):
        dev, answer = host.run([PYTHON, "-c", SHM, *args], check=True).stdout.split(" ", 1)
        return int(dev), answer.strip()

    dev_a1, created = shm(a, "create", name, "hello from A")
    assert created == "created"
    # Another process of A, started after the creator exited, sees the same tmpfs and data.
    dev_a2, read = shm(a, "read", name)
    assert (dev_a2, read) == (dev_a1, "read hello from A")
    # B and the machine have other /dev/shm's, without the segment.
    dev_b, read_b = shm(b, "read", name)
    assert read_b == "absent"
    assert len({dev_a1, dev_b, machine_dev}) == 3
    assert not os.path.exists(f"/dev/shm{name}")
    # Seen from the machine through the anchors: A's holds the segment, B's is empty.
    assert [p.name for p in a.shm.iterdir()] == [name[1:]]
    assert (a.shm / name[1:]).read_bytes().startswith(b"hello from A\0")
    assert list(b.shm.iterdir()) == []


def test_link_down_cuts_the_wire_and_link_up_mends_it(two_hosts):
    a, b = two_hosts
    port = 7001
    serve(a, a.address, port, count=100)
    assert connect(b, a.address, port) == f"{a.name} to {b.address}: ping"

    a.link_down()
    assert "state DOWN" in a.exec_ip("-o", "link", "show", "dev", a.iface)
    started = time.monotonic()
    assert connect(b, a.address, port, timeout=0.5).startswith("failed: TimeoutError")
    assert time.monotonic() - started < 5
    # A's side of a cut wire: its route is gone.
    assert "Network is unreachable" in connect(a, b.address, port, timeout=0.5)

    a.link_up()
    assert connect(b, a.address, port) == f"{a.name} to {b.address}: ping"


def test_zeromq_pub_sub_from_a_to_b(two_hosts):
    a, b = two_hosts
    endpoint = f"tcp://{a.address}:7002"
    publisher = a.popen([PYTHON, "-c", (
        "import socket, sys, time, zmq\n"
        "pub = zmq.Context().socket(zmq.PUB)\n"
        "pub.bind(sys.argv[1])\n"
        "for i in range(2000):\n"  # until B's SUB has joined and taken its messages
        "    pub.send_multipart([b'cam', f'{socket.gethostname()} {i}'.encode()])\n"
        "    time.sleep(0.005)\n"), endpoint], stderr=subprocess.PIPE)
    got = b.run([PYTHON, "-c", (
        "import sys, zmq\n"
        "sub = zmq.Context().socket(zmq.SUB)\n"
        "sub.setsockopt(zmq.SUBSCRIBE, b'cam')\n"
        "sub.setsockopt(zmq.RCVTIMEO, 5000)\n"
        "sub.connect(sys.argv[1])\n"
        "for _ in range(5):\n"
        "    print(sub.recv_multipart()[1].decode())\n"), endpoint], timeout=20)
    assert got.returncode == 0, got.stderr
    lines = got.stdout.split()
    senders, numbers = lines[0::2], [int(n) for n in lines[1::2]]
    assert senders == [a.name] * 5
    assert numbers == list(range(numbers[0], numbers[0] + 5))
    assert publisher.poll() is None  # killed by the teardown


def test_a_whole_framebus_runs_inside_each_host(two_hosts):
    """Each host runs its own broker on its own 127.0.0.1:5555 (the default: no clash), a
    producer and a local subscriber of the same stream name: two machines, two rings."""
    stream = "cam"
    env = {"FRAMEBUS_BROKER": "tcp://127.0.0.1:5555"}
    consumers = {}
    for host in two_hosts:
        host.popen([PYTHON, "-m", "framebus", "broker"], env=env, stderr=subprocess.DEVNULL)
        host.popen([PYTHON, "-m", "framebus", "testsrc", stream, "--size", "64x48", "--fps",
                    "100"], env=env, stderr=subprocess.DEVNULL)
        consumers[host.name] = host.popen([PYTHON, str(TESTS / "consumer.py"), stream,
                                           "--frames", "10", "--timeout", "20"],
                                          env=env, stdout=subprocess.PIPE,
                                          stderr=subprocess.PIPE, text=True)
    segment = config.segment_name(stream).lstrip("/")  # the same name on both hosts
    for host in two_hosts:
        result = result_of(consumers[host.name])
        assert result["good"] >= 10 and result["bad"] == 0, result
        assert (host.shm / segment).exists()  # each ring is in its host's own /dev/shm...
    assert not os.path.exists(f"/dev/shm/{segment}")  # ...none in the machine's


def test_teardown_kills_everything_and_leaves_nothing():
    require_netns()
    hosts = TwoHosts(grace=0.3)
    started = time.monotonic()
    a, b = hosts.start()
    setup = time.monotonic() - started
    try:
        stubborn = a.popen([PYTHON, "-c", "import signal, time; signal.signal(signal.SIGTERM, "
                            "signal.SIG_IGN); print('ready', flush=True); time.sleep(60)"],
                           stdout=subprocess.PIPE)
        assert read_line(stubborn, 10) == "ready\n"
        # A child that leaves its parent's process group and session: found by its namespace.
        escaper = b.popen(["sh", "-c", "setsid sleep 60 & echo $!; exec sleep 60"],
                          stdout=subprocess.PIPE)
        escaped = int(read_line(escaper, 10))
        plain = a.popen(["sleep", "60"])
        (a.shm / "segment").write_bytes(b"x")
        wait_until(lambda: escaped in b.pids(), 5, what="the escaped child to start")
        anchors = [a.anchor_pid, b.anchor_pid]
        pids = [stubborn.pid, escaper.pid, escaped, plain.pid, *anchors]
        names = [a.netns, b.netns]
        # The detector sees all of it while it exists: its silence after close means something.
        before = hosts.leftovers()
        assert {f"netns {n}" for n in names} <= set(before)
        assert {f"process {p} of {h.netns}" for p, h in [(stubborn.pid, a), (escaped, b),
                                                         (plain.pid, a)]} <= set(before)
        assert {f"directory {h.runtime_dir}" for h in (a, b)} <= set(before)
        assert sum(f"tmpfs {src}{n} still mounted" in line for line in before for n in names
                   for src in ("fbshm-", "fbrun-")) == 4  # each host's /dev/shm, runtime dir
    except BaseException:
        hosts.close(check=False)
        raise

    started = time.monotonic()
    hosts.close()
    teardown = time.monotonic() - started
    print(f"setup {setup * 1000:.0f} ms, teardown {teardown * 1000:.0f} ms")

    assert hosts.leftovers() == []
    listed = subprocess.run([IP, "netns", "list"], capture_output=True, text=True,
                            check=True).stdout
    assert not any(n in listed for n in names)
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:  # gone, or a zombie waiting for init
                assert f.read().rsplit(")", 1)[1].split()[0] == "Z", f"{pid} is alive"
        except FileNotFoundError:
            pass
    assert stubborn.returncode == -signal.SIGKILL  # ignored SIGTERM, so got SIGKILL
    assert plain.returncode == -signal.SIGTERM
    assert not a.runtime_dir.exists() and not b.runtime_dir.exists()
    assert teardown < 0.3 + 2
    hosts.close()  # idempotent
    with pytest.raises(RuntimeError, match="not running"):
        a.popen(["true"])


def test_stale_leftovers_are_removed_and_nothing_else():
    require_netns()
    gone = subprocess.Popen(["true"])
    gone.wait()  # a pid that no longer exists: the owner of a "crashed run"
    stale, alive, foreign = f"fbA-{gone.pid}-0", "fbA-1-0", f"fbtest-other-{os.getpid()}"
    stale_dir = Path(tempfile.gettempdir()) / f"{stale}-run-x"
    orphan = None
    try:
        for name in (stale, alive, foreign):
            subprocess.run([IP, "netns", "add", name], check=True)
        stale_dir.mkdir()
        # An orphan of the crashed run: an anchor-like process in its namespace, marked.
        orphan = subprocess.Popen([IP, "netns", "exec", stale, "sleep", "60"],
                                  env={**os.environ, MARK: stale}, start_new_session=True)
        stale_ns = os.stat(NETNS_DIR / stale).st_ino
        wait_until(lambda: _netns_inode(orphan.pid) == stale_ns, 5,
                   what="the orphan to enter its namespace")

        removed = cleanup_stale()

        assert orphan.wait(5) == -signal.SIGKILL
        assert f"netns {stale}" in removed and f"directory {stale_dir}" in removed, removed
        assert not (NETNS_DIR / stale).exists() and not stale_dir.exists()
        # pid 1 is alive, so fbA-1-0 belongs to a run still going; the other is not ours.
        assert (NETNS_DIR / alive).exists() and (NETNS_DIR / foreign).exists()
    finally:
        if orphan and orphan.poll() is None:
            os.killpg(orphan.pid, signal.SIGKILL)
            orphan.wait()
        for name in (stale, alive, foreign):
            subprocess.run([IP, "netns", "del", name], capture_output=True)
        shutil.rmtree(stale_dir, ignore_errors=True)


def _netns_inode(pid: int) -> int | None:
    try:
        return os.stat(f"/proc/{pid}/ns/net").st_ino
    except OSError:
        return None


def test_netns_available_here_and_skips_with_a_reason_elsewhere(monkeypatch):
    ok, why = netns_available()
    assert netns_available() == (ok, why)  # computed once
    if os.geteuid() != 0:
        pytest.skip(why)
    assert ok, why
    # Elsewhere the same check (uncached) says why, and require_netns turns that into a skip.
    check = netns.netns_available.__wrapped__
    monkeypatch.setattr(netns, "which", lambda tool: None if tool == "nsenter" else tool)
    assert check() == (False, "commands missing: apt-get install util-linux")
    monkeypatch.setattr(netns.os, "geteuid", lambda: 1000)
    assert check() == (False, "network namespaces need root (running as uid 1000)")
    monkeypatch.setattr(netns, "netns_available", check)
    with pytest.raises(pytest.skip.Exception, match="need root"):
        require_netns()
