"""One host of the two-host harness (:mod:`framebus.testing.netns`): a network namespace,
a private /dev/shm, a runtime directory and a name, kept alive by its anchor process, and
what runs in it. :class:`~framebus.testing.netns.TwoHosts` makes and removes hosts."""

from __future__ import annotations

import os
import selectors
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from framebus.testing import linux


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
            raise linux.NetnsError(f"{self} is not running")
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
            raise linux.NetnsError(f"{self} is not running")
        for key in ("start_new_session", "process_group", "preexec_fn", "executable"):
            if key in kw:
                raise TypeError(f"Host.popen sets {key} itself")
        if isinstance(args, (str, os.PathLike)):
            args = [args]
        argv = [os.fspath(a) for a in args]
        cwd = os.path.abspath(os.fspath(kw.get("cwd") or os.getcwd()))
        cmd = [linux.tool("nsenter"), f"--target={self.anchor_pid}", "--mount", "--net", "--uts",
               f"--wd={cwd}", "--", *argv]
        full_env = {**os.environ, **self.env, **(env or {}), linux.MARK: self.netns}
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
            linux.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate()
            raise subprocess.TimeoutExpired(argv, timeout, out, err) from None
        except BaseException:
            linux.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise
        result = subprocess.CompletedProcess(argv, proc.returncode, out, err)
        if check:
            result.check_returncode()
        return result

    def exec_ip(self, *args: str) -> str:
        """``ip -n <netns> ARGS`` (from the machine, not as a host process); its stdout."""
        return linux.ip("-n", self.netns, *args)

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
                raise linux.NetnsError(f"{self}: {self.iface} does not come up")
            time.sleep(0.005)

    def pids(self) -> list[int]:
        """Live processes in this host (its network namespace), the anchor excluded."""
        return [p for p in linux.pids_in_netns(self._netns_id) if p != self.anchor_pid]

    # -- life cycle, driven by TwoHosts --

    def _start_anchor(self, shm_size: str | None) -> None:
        options = "mode=1777,nosuid,nodev" + (f",size={shm_size}" if shm_size else "")
        script = ('set -e; mount -t tmpfs -o "$1" "$2" /dev/shm; '
                  'mount -t tmpfs -o mode=0700,nosuid,nodev,size=16m "$3" "$4"; '
                  'printf %s "$5" > /proc/sys/kernel/hostname; '
                  'echo "ready $$"; exec sleep infinity')
        self._anchor = subprocess.Popen(
            [linux.tool("ip"), "netns", "exec", self.netns,
             linux.tool("unshare"), "--mount", "--uts", "--propagation", "private", "--",
             linux.tool("sh"), "-c", script, "anchor", options, linux.SHM_SOURCE + self.netns,
             linux.RUN_SOURCE + self.netns, str(self.runtime_dir), self.name],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env={**os.environ, linux.MARK: self.netns}, start_new_session=True,
            preexec_fn=linux.die_with_parent)

    def _await_anchor(self, deadline: float) -> None:
        anchor = self._anchor
        assert anchor is not None and anchor.stdout is not None and anchor.stderr is not None
        line = b""
        with selectors.DefaultSelector() as sel:
            sel.register(anchor.stdout, selectors.EVENT_READ)
            while not line.endswith(b"\n"):
                left = deadline - time.monotonic()
                if left <= 0 or not sel.select(left):
                    raise linux.NetnsError(f"{self}: anchor not ready in time")
                chunk = os.read(anchor.stdout.fileno(), 100)
                if not chunk:
                    anchor.wait(5)
                    err = anchor.stderr.read().decode(errors="replace").strip()
                    raise linux.NetnsError(f"{self}: anchor failed ({anchor.returncode}): {err}")
                line += chunk
        anchor.stdout.close()
        anchor.stderr.close()
        word, pid = line.split()
        self.anchor_pid = int(pid)
        self._netns_id = linux.ns_id(linux.NETNS_DIR / self.netns)
        if linux.ns_id(f"/proc/{self.anchor_pid}/ns/net") != self._netns_id:
            raise linux.NetnsError(f"{self}: anchor {self.anchor_pid} is not in {self.netns}")

    def _signal(self, sig: int) -> int:
        """Signals every process of this host, anchor excepted; returns how many there were."""
        count = 0
        for proc in self._procs:
            if proc.poll() is None:  # not reaped yet, so its pid is still its group's
                linux.killpg(proc.pid, sig)
                count += 1
        for pid in self.pids():  # whatever left its group, or outlived its leader
            linux.kill(pid, sig)
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
            subprocess.run([linux.tool("nsenter"), f"--target={self.anchor_pid}", "--mount", "--",
                            linux.tool("umount"), "--lazy", "/dev/shm", str(self.runtime_dir)],
                           capture_output=True, timeout=10)
        if anchor.poll() is None:  # not reaped, so its group id is still its own
            linux.killpg(anchor.pid, signal.SIGKILL)
            anchor.wait(10)
        for stream in (anchor.stdout, anchor.stderr):
            if stream and not stream.closed:
                stream.close()
