"""What the web bench runs on: a private framebus namespace and broker, the console server
as a process of its own (so its CPU is its own, from /proc), producers, and Debian's
Chromium through Playwright. Everything started here is stopped by Rig.close()."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import suppress
from pathlib import Path
from typing import Any

from bench.common import ThreadBroker, cpu_seconds, free_port, sweep_rings
from framebus.support import children
from framebus.testing import media

log = logging.getLogger("bench.web")

CHROMIUM = "/usr/bin/chromium"
#: Playwright's own 30 s was once too short for a page to open, on a machine at load 24.
PATIENCE_MS = 90_000
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--autoplay-policy=no-user-gesture-required",
                 # 16 viewers in one browser: none of them throttled as a background page.
                 "--disable-background-timer-throttling", "--disable-renderer-backgrounding",
                 "--disable-backgrounding-occluded-windows"]


class Rig:
    def __init__(self) -> None:
        self.runtime = tempfile.mkdtemp(prefix="framebus-bench-web")
        self.prefix = f"fbwebbench{os.getpid()}"
        self.broker_address = f"tcp://127.0.0.1:{free_port()}"
        os.environ.update(FRAMEBUS_SHM_PREFIX=self.prefix, FRAMEBUS_RUNTIME_DIR=self.runtime,
                          FRAMEBUS_BROKER=self.broker_address)  # the children inherit them
        self.broker = ThreadBroker(self.broker_address)
        self.broker.start()
        self.procs: list[subprocess.Popen] = []
        self.server: subprocess.Popen | None = None
        self.url = ""
        self._playwright: Any = None
        self.browser: Any = None

    # -- the console server ------------------------------------------------------------------

    def start_server(self) -> str:
        """The console (`framebus web`, else bench.web.serve's bare live routes)."""
        port = free_port()
        if console_available():
            args = ["-m", "framebus", "web", "--bind", f"127.0.0.1:{port}",
                    "--broker", self.broker_address]
        else:
            args = ["-m", "bench.web.serve", str(port), self.broker_address]
        self.server = self.start(*args)
        self.url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            with suppress(OSError):
                urllib.request.urlopen(self.url + "/static/player.js", timeout=1).close()
                return self.url
            time.sleep(0.1)
        raise RuntimeError(f"the console server did not answer at {self.url}")

    def server_cpu(self) -> float:
        assert self.server is not None
        seconds = cpu_seconds(self.server.pid)
        if seconds is None:
            raise RuntimeError("the console server died")
        return seconds

    # -- producers ---------------------------------------------------------------------------

    def start(self, *args: str) -> subprocess.Popen:
        proc = subprocess.Popen([sys.executable, *args], start_new_session=True,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.procs.append(proc)
        return proc

    def clip(self, frames: int, width: int, height: int) -> Path:
        """An H.264 clip of the moving test picture (real work for the encoder: ~4 Mbit/s at
        1080p25, as docs/packets.md measured)."""
        path = Path(self.runtime) / f"clip{width}x{height}.mp4"
        if not path.exists():
            media.encode(path, frames, width, height, fps=25)
        return path

    def decoder(self, clip: Path, name: str) -> subprocess.Popen:
        """`framebus decode --loop --decode demand`: packets always, pixels while watched."""
        return self.start("-m", "framebus", "decode", str(clip), "--name", name, "--loop",
                          "--decode", "demand", "--threads", "1")

    # -- the browser -------------------------------------------------------------------------

    def launch_browser(self) -> Any:
        from playwright.sync_api import sync_playwright

        if not Path(CHROMIUM).exists():
            raise RuntimeError(f"no {CHROMIUM}: apt-get install chromium")
        self._playwright = sync_playwright().start()
        self.browser = self._playwright.chromium.launch(executable_path=CHROMIUM,
                                                        args=CHROMIUM_ARGS)
        return self.browser

    def page(self, html: str | None = None) -> Any:
        """A page of the console's origin (loopback: Chromium's local network access checks
        refuse a page of no origin its WebSocket to 127.0.0.1), showing *html* if given."""
        page = self.browser.new_page(viewport={"width": 800, "height": 600})
        page.set_default_timeout(PATIENCE_MS)
        page.goto(self.url + "/static/player.js")
        if html is not None:
            page.set_content(html, wait_until="commit")
        return page

    # -- the end -----------------------------------------------------------------------------

    def close(self) -> None:
        for closing in (lambda: self.browser.close(), lambda: self._playwright.stop()):
            with suppress(Exception):
                closing()
        for proc in reversed(self.procs):
            children.stop(proc, 5)
        self.broker.stop()
        sweep_rings(self.prefix)
        sweep_rings(f"{self.prefix}-packets")
        shutil.rmtree(self.runtime, ignore_errors=True)


def console_available() -> bool:
    """Whether web-core's `framebus web` is here (else the bench serves the live routes)."""
    try:
        import framebus.web.app  # noqa: F401
    except ImportError:
        return False
    return True
