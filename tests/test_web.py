"""The console (`framebus web`) in a real browser, on a real broker."""

from __future__ import annotations

import urllib.request

from conftest import free_port, wait_until

pytest_plugins = ["browser"]  # its fixtures: browser, page


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as reply:
            return reply.status == 200
    except OSError:
        return False


def test_page_loads(procs, broker, page):
    port = free_port()
    procs.framebus("web", "--bind", f"127.0.0.1:{port}")
    url = f"http://127.0.0.1:{port}/"
    wait_until(lambda: _answers(url), 10, what="the console to answer")
    page.goto(url)
    assert page.title() == "framebus"
