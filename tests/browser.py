"""The browser of the console's tests: Debian's chromium, headless, driven by Playwright.

    pytest_plugins = ["browser"]  # in a test module: its fixtures

    def test_x(page): page.goto(url) ...

Playwright's driver only: the browser is /usr/bin/chromium (`make system-deps` installs
it), never one Playwright downloads. Without it (or without playwright) the tests that
use these fixtures are skipped, saying why. One browser for the session (a launch costs
a second), started with a new user-data directory (Playwright makes one per launch and
removes it at close); a new context, its own cookies and storage, for each test. Every
one is closed even on failure.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
#: No sandbox (the suite runs as root), no GPU, and nothing that talks to the internet.
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
VIEWPORT = {"width": 1280, "height": 800}


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    """A headless chromium (playwright.sync_api.Browser)."""
    if not CHROMIUM.exists():
        pytest.skip(f"no {CHROMIUM}: the browser tests need Debian's chromium "
                    "(make system-deps, or apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api",
                                   reason="the browser tests need playwright (make install)")
    with sync_api.sync_playwright() as driver:
        chromium = driver.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                          args=ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser) -> Iterator[object]:
    """A new tab in a context of its own: a test's login is never the next one's."""
    context = browser.new_context(viewport=VIEWPORT)
    try:
        yield context.new_page()
    finally:
        context.close()
