"""Child processes: starting framebus commands as children, and stopping them for sure.

::

    proc = spawn(["decode", "testsrc", "--name", "demo"])   # `python -m framebus ...`
    ...
    status = stop(proc)           # SIGTERM (its process group if it leads one), SIGKILL
                                  # after the timeout, reaped: never left behind
    stop_all([decoder, broker])   # several, signalled together, in that order

A spawned child runs in a session of its own, so that a terminal's Ctrl-C, which reaches
the terminal's whole foreground process group, reaches the parent alone: the parent
stops its children in order, and none is interrupted twice in its cleanup. Should the
parent die without stopping them, the kernel sends each SIGTERM (PR_SET_PDEATHSIG, asked
for by the child itself: :func:`die_with_parent`, which ``framebus``'s main group calls).
"""

from __future__ import annotations

import ctypes
import multiprocessing.process
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from typing import Any

#: Set in a spawned child's environment to its parent's pid: the child asks the kernel
#: for SIGTERM when that parent dies.
PARENT_ENV = "FRAMEBUS_SUPERVISOR_PID"
_PR_SET_PDEATHSIG = 1

#: What stop() stops: a subprocess, or a multiprocessing process.
Process = subprocess.Popen | multiprocessing.process.BaseProcess


def framebus_command(args: Sequence[str]) -> list[str]:
    """The command line running ``framebus ARGS`` with this interpreter."""
    return [sys.executable, "-m", "framebus", *args]


def spawn(args: Sequence[str], **popen: Any) -> subprocess.Popen:
    """Start ``framebus ARGS`` in a session of its own, told to die with us.

    *popen* goes to :class:`subprocess.Popen` (stdin, stdout, stderr, text...).
    """
    env = {**(popen.pop("env", None) or os.environ), PARENT_ENV: str(os.getpid())}
    return subprocess.Popen(framebus_command(args), start_new_session=True, env=env, **popen)


def die_with_parent() -> None:
    """In a child started by :func:`spawn`: be sent SIGTERM when the parent dies, however
    it dies.

    Called at the child's start rather than from a preexec_fn, which is unsafe in a
    process with threads. If the parent died before the call, exit now. Does nothing in a
    process that was not spawned so.
    """
    parent = os.environ.get(PARENT_ENV)
    if not parent:
        return
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        return
    if str(os.getppid()) != parent:
        sys.exit(0)


def stop(proc: Process, timeout: float = 5.0, sig: int = signal.SIGTERM) -> int | None:
    """Signal *proc* (its whole process group if it leads one) with *sig*, give it
    *timeout* seconds to end, then SIGKILL it (its group too), and reap it.

    Returns its exit status (negative: the signal that ended it, ``-SIGKILL`` when it had
    to be killed); None for a multiprocessing process whose status is unknown. A process
    that has ended already is only reaped.
    """
    stop_all([proc], timeout, sig)
    return _status(proc)


def stop_all(procs: Iterable[Process], timeout: float = 5.0, sig: int = signal.SIGTERM,
             patience: float = 0.0) -> None:
    """Stop several processes within one *timeout*: wait up to *patience* seconds for
    them to end by themselves, signal those still running with *sig*, in order, wait for
    them, SIGKILL those left, and reap every one."""
    procs = list(procs)
    end = time.monotonic() + patience
    for proc in procs:
        _wait(proc, max(0.0, end - time.monotonic()))
    running = [proc for proc in procs if _alive(proc)]
    groups = {id(proc): _leads_group(proc) for proc in running}
    for proc in running:
        _signal(proc, sig, groups[id(proc)])
    end = time.monotonic() + timeout
    for proc in running:
        if not _wait(proc, max(0.0, end - time.monotonic())):
            _signal(proc, signal.SIGKILL, groups[id(proc)])
            _wait(proc, None)


def _leads_group(proc: Process) -> bool:
    try:
        return proc.pid is not None and os.getpgid(proc.pid) == proc.pid
    except ProcessLookupError:
        return False


def _signal(proc: Process, sig: int, group: bool) -> None:
    if proc.pid is None:
        return
    try:
        if group:
            os.killpg(proc.pid, sig)
        else:
            os.kill(proc.pid, sig)
    except ProcessLookupError:
        pass


def _wait(proc: Process, timeout: float | None) -> bool:
    """Wait up to *timeout* seconds (None: for ever) for *proc* to end; whether it did."""
    if isinstance(proc, subprocess.Popen):
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return False
        return True
    if proc.pid is None:  # never started
        return True
    proc.join(timeout)
    return not proc.is_alive()


def _alive(proc: Process) -> bool:
    if isinstance(proc, subprocess.Popen):
        return proc.poll() is None
    return proc.pid is not None and proc.is_alive()


def _status(proc: Process) -> int | None:
    if isinstance(proc, subprocess.Popen):
        return proc.poll()
    return proc.exitcode
