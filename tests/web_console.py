"""A real `framebus web` for the console's tests, and the producers it shows."""

from __future__ import annotations

import json
import subprocess
import urllib.error
import urllib.request
from typing import Any

from conftest import Processes, free_port, wait_until


class Console:
    """A console at *url*, served by *proc* (`framebus web`, or `framebus up`)."""

    def __init__(self, url: str, proc: subprocess.Popen) -> None:
        self.url, self.proc = url, proc

    @classmethod
    def start(cls, procs: Processes, *args: str) -> Console:
        """`framebus web ARGS` on a free loopback port, once it answers."""
        port = free_port()
        console = cls(f"http://127.0.0.1:{port}",
                      procs.framebus("web", "--bind", f"127.0.0.1:{port}", *args))
        console.wait()
        return console

    def wait(self, timeout: float = 15) -> None:
        wait_until(lambda: self.status("/") in (200, 401), timeout,
                   what="the console to answer")

    def status(self, path: str, **headers: str) -> int | None:
        try:
            with urllib.request.urlopen(self.request(path, headers), timeout=2) as reply:
                return reply.status
        except urllib.error.HTTPError as exc:
            return exc.code
        except OSError:
            assert self.proc.poll() is None, self.proc.communicate()[1]
            return None

    def request(self, path: str, headers: dict[str, str]) -> urllib.request.Request:
        return urllib.request.Request(self.url + path, headers=headers)

    def get(self, path: str, **headers: str) -> str:
        with urllib.request.urlopen(self.request(path, headers), timeout=5) as reply:
            return reply.read().decode()

    def streams(self, **headers: str) -> dict[str, Any]:
        """/api/streams, by name."""
        return {row["name"]: row for row in json.loads(self.get("/api/streams",
                                                                **headers))["streams"]}


def pattern(procs: Processes, name: str, fps: int = 10):
    """A test-pattern producer, small and slow: the console's tests read figures, not frames."""
    return procs.framebus("testsrc", name, "--size", "160x120", "--fps", str(fps))
