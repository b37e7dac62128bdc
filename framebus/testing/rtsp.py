"""A real RTSP server for tests: framebus/testing/rtsp_server.py (GStreamer's RTSP server)
run as a separate process by Debian's own /usr/bin/python3, which has the gi bindings the
venv lacks.

    from framebus.testing.rtsp import PYAV_OPTIONS, RtspServer, rtsp_available

    with RtspServer() as server:   # started: it listens
        with av.open(server.url, options=PYAV_OPTIONS, timeout=(10, 5)) as container:
            ...
        server.kill()    # SIGKILL, as a crashed camera
        server.start()   # again, on the same port: the same URL works again

:func:`rtsp_available` says whether this machine can run it, and if not why (the Debian
packages are missing: `make test` installs them as root). The test suite's fixtures
``rtsp_server`` and ``rtsp_servers`` (tests/conftest.py) skip a test with that reason, and
always kill their servers, whatever the test did. Each server also exits on its own if the
process that started it dies, as its standard input is a pipe from that process. Nothing
here needs pytest.
"""

from __future__ import annotations

import functools
import os
import selectors
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, NoReturn

SYSTEM_PYTHON = "/usr/bin/python3"
SCRIPT = Path(__file__).with_name("rtsp_server.py")
DEBIAN_PACKAGES = ("python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-base "
                   "gstreamer1.0-plugins-good gstreamer1.0-plugins-ugly")

# What a PyAV client of these servers passes to av.open(): RTP interleaved in the RTSP TCP
# connection (no UDP ports to lose packets on), and FFmpeg's rtsp demuxer's `timeout`: the
# socket I/O timeout, in microseconds (`stimeout` is gone since FFmpeg 5 and is ignored).
PYAV_OPTIONS = {"rtsp_transport": "tcp", "timeout": "5000000"}


@functools.cache
def rtsp_available() -> tuple[bool, str]:
    """Whether this machine can run the server, and if not, why."""
    if not os.access(SYSTEM_PYTHON, os.X_OK):
        return False, f"{SYSTEM_PYTHON} is missing"
    try:
        check = subprocess.run([SYSTEM_PYTHON, "-I", str(SCRIPT), "--check"], capture_output=True,
                               text=True, timeout=60, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return False, f"{SCRIPT.name} --check did not answer within 60 s"
    if check.returncode != 0:
        return False, (check.stdout + check.stderr).strip() or f"exit status {check.returncode}"
    return True, "ok"


class RtspServer:
    """One rtsp_server.py process at a time, in its own session, on one port.

    The first start() with port=0 lets the kernel pick a free port; later start()s reuse
    that port, so a restarted server has the same URL.
    """

    def __init__(self, port: int = 0, path: str = "/live", size: tuple[int, int] = (320, 240),
                 fps: int = 25, ready_timeout: float = 20, pattern: str = "ball",
                 popen: Callable[..., subprocess.Popen] | None = None,
                 clip: Path | None = None, mounts: int = 1) -> None:
        self.port = port
        #: A pre-encoded H.264 MP4 to serve at *mounts* mounts (path0, path1, ...), with
        #: no encoding, instead of a pattern encoded live at *path*.
        self.clip = clip
        self.mounts = mounts
        self.pattern = pattern
        self.path = path
        self.size = size
        self.fps = fps
        self.ready_timeout = ready_timeout
        # How the server process is started: in a session of its own here, or by a host of
        # the two-host harness (Host.popen, which makes the session itself) to serve inside it.
        self._popen = popen or functools.partial(subprocess.Popen, start_new_session=True)
        self.proc: subprocess.Popen | None = None
        self._stderr: IO[bytes] | None = None

    @property
    def url(self) -> str:
        if not self.port:
            raise RuntimeError("the server has not been started yet, so it has no port")
        return f"rtsp://127.0.0.1:{self.port}{self.path}"

    @property
    def urls(self) -> list[str]:
        """Every mount's URL: the one at *path*, or (a clip, several mounts) path0, ..."""
        if self.mounts == 1 and self.clip is None:
            return [self.url]
        return [f"{self.url}{i}" for i in range(self.mounts)]

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> RtspServer:
        """Start the server and return once it listens; raise RuntimeError if it does not."""
        if self.proc is not None and self.proc.poll() is None:
            raise RuntimeError(f"the RTSP server is already running (pid {self.proc.pid})")
        self._reap()
        width, height = self.size
        # A file, not a pipe: it never fills up. Closed by _reap(), at the next start or close.
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115
        self.proc = self._popen(
            [SYSTEM_PYTHON, "-I", str(SCRIPT), "--port", str(self.port), "--path", self.path,
             "--size", f"{width}x{height}", "--fps", str(self.fps), "--pattern", self.pattern,
             "--stdin-watchdog", *self._clip_arguments()],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr)
        try:
            line = self._ready_line()
            if not self.port:  # the kernel's choice, kept for restarts
                self.port = int(line.split(":")[2].split("/")[0])
            if line != f"ready {self.url}":
                self._fail(f"said {line!r}, expected 'ready {self.url}'")
        except BaseException:
            self.kill()
            raise
        return self

    def _clip_arguments(self) -> list[str]:
        if self.clip is None and self.mounts == 1:
            return []
        clip = [] if self.clip is None else ["--clip", str(self.clip)]
        return [*clip, "--mounts", str(self.mounts)]

    def _ready_line(self) -> str:
        assert self.proc is not None and self.proc.stdout is not None
        stdout = self.proc.stdout
        deadline = time.monotonic() + self.ready_timeout
        data = b""
        with selectors.DefaultSelector() as selector:
            selector.register(stdout, selectors.EVENT_READ)
            while b"\n" not in data:
                left = deadline - time.monotonic()
                if left <= 0:
                    self._fail(f"did not say it was ready within {self.ready_timeout} s")
                if selector.select(left):
                    chunk = os.read(stdout.fileno(), 4096)
                    if not chunk:
                        self.proc.wait(5)
                        self._fail(f"exited with status {self.proc.returncode} before it was "
                                   "ready")
                    data += chunk
        line = data.split(b"\n", 1)[0].decode(errors="replace").strip()
        if not line.startswith("ready rtsp://"):
            self._fail(f"printed {line!r} instead of its ready line")
        return line

    def _fail(self, what: str) -> NoReturn:
        raise RuntimeError(f"RTSP server on port {self.port or 'any'} {what}; "
                           f"its stderr:\n{self.stderr() or '(empty)'}")

    def stderr(self) -> str:
        """What the current (or last) server process wrote on stderr."""
        if self._stderr is None:
            return ""
        self._stderr.seek(0)
        return self._stderr.read().decode(errors="replace").strip()

    def kill(self) -> None:
        """SIGKILL the server (and anything it started), as a crash would, and reap it."""
        self._signal(signal.SIGKILL)
        if self.proc is not None:
            self.proc.wait()

    def stop(self, timeout: float = 10) -> int | None:
        """SIGTERM the server and wait (SIGKILL after `timeout`); its exit status."""
        if self.proc is None:
            return None
        self._signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return self.proc.returncode

    def _signal(self, sig: int) -> None:
        # Only while it runs: once reaped, its pid (and group id) may belong to another.
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            # Its whole group: the server leads its own (start_new_session=True).
            os.killpg(self.proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def _reap(self) -> None:
        if self.proc is not None:
            for stream in (self.proc.stdin, self.proc.stdout):
                if stream:
                    stream.close()
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None

    def close(self) -> None:
        """Stop the server, whatever its state, and release its pipes; safe to call twice."""
        try:
            self.kill()
        finally:
            self._reap()
            self.proc = None

    def __enter__(self) -> RtspServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()


class RtspServers:
    """Makes started RTSP servers; close() kills them all (the fixture calls it)."""

    def __init__(self) -> None:
        self.servers: list[RtspServer] = []

    def __call__(self, **kwargs) -> RtspServer:
        server = RtspServer(**kwargs)
        self.servers.append(server)
        return server.start()

    def close(self) -> None:
        for server in reversed(self.servers):
            server.close()
