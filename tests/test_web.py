"""The console (`framebus web`) in a real browser: Debian's chromium, on a real broker and
real producers."""

from __future__ import annotations

import signal
import time

from conftest import leftover_segments, wait_until
from web_console import Console, pattern

from framebus.web.auth import make_token

pytest_plugins = ["browser"]  # its fixtures: browser, page


def _row(page, name: str):
    return page.locator(f'#streams tr[data-name="{name}"]')


def test_the_list_shows_every_stream_and_one_that_dies_shows_dead_within_2_s(
        procs, broker, page, stream_name):
    names = [f"{stream_name}{i}" for i in range(3)]
    producers = {name: pattern(procs, name) for name in names}
    console = Console.start(procs)
    def flowing() -> bool:
        rows = console.streams()
        return all(n in rows and rows[n]["age"] is not None for n in names)

    wait_until(flowing, 15, what="the streams listed, each with a frame")
    page.goto(console.url)
    for name in names:
        row = _row(page, name)
        row.and_(page.locator('[data-alive="true"]')).wait_for(timeout=5000)
        assert row.locator('[data-col="host"]').text_content() == console.streams()[name]["host"]
        assert row.locator('[data-col="geometry"]').text_content() == "160x120x3"
        assert row.locator('[data-col="alive"]').text_content().startswith("alive pid ")
        assert row.locator('[data-col="age"]').text_content().endswith(" s ago")
    # The fps of a 10 fps producer, updated live in the page.
    wait_until(lambda: 5 < float(_row(page, names[0]).locator('[data-col="fps"]')
                                 .text_content()) < 15, 5, what="the fps shown")
    assert page.locator("#grid .card").count() == 3
    assert page.locator("#summary").text_content() == "3 streams, 3 alive"

    # The previews show the pictures, and a stream's live view opens in the page (its
    # pixels as MJPEG: the test pattern has no packets; player.js is test_web_live's).
    page.wait_for_function("[...document.querySelectorAll('#grid img')].every("
                           "i => i.naturalWidth === 160)", timeout=10000)
    _row(page, names[0]).click()
    assert page.locator("#view-name").text_content() == names[0]
    page.wait_for_function(f"document.querySelector('.screen img[alt=\"{names[0]}\"]')"
                           "?.naturalWidth === 160", timeout=10000)
    page.click("#view-close")
    assert page.locator("#view").is_hidden() and page.locator(".screen img").count() == 0

    dying = names[1]
    killed = time.monotonic()
    procs.stop(producers[dying], signal.SIGKILL)
    dead = _row(page, dying).and_(page.locator('[data-alive="false"]'))
    dead.wait_for(timeout=2000)
    print(f"shown dead {time.monotonic() - killed:.2f} s after SIGKILL")
    assert dead.locator('[data-col="alive"]').text_content().startswith("dead pid ")
    assert page.locator("#summary").text_content() == "3 streams, 2 alive"
    for name in (names[0], names[2]):
        assert _row(page, name).get_attribute("data-alive") == "true"
    # The broker reclaims the killed producer's ring once it misses its heartbeats.
    wait_until(lambda: not any(s.endswith("." + dying) for s in leftover_segments()), 10,
               what="the killed producer's ring reclaimed")


def test_the_login_refuses_a_wrong_token_and_admits_the_right_one(
        procs, broker, page, stream_name, tmp_path):
    token = make_token(tmp_path / "keys").read_text().strip()
    pattern(procs, stream_name)
    console = Console.start(procs, "--keys", str(tmp_path / "keys"))
    page.goto(console.url)
    assert page.url == console.url + "/login"
    page.fill("input[name=token]", "not-the-token-at-all")
    with page.expect_response(console.url + "/login") as reply:
        page.click("button[type=submit]")
    assert reply.value.status == 403
    assert page.locator("#message").text_content() == "Wrong token."
    assert page.context.cookies() == []
    page.fill("input[name=token]", token)
    page.click("button[type=submit]")
    page.wait_for_url(console.url + "/")
    _row(page, stream_name).wait_for(timeout=10000)
    # Programs send the token itself; without it, nothing but /login answers.
    assert console.status("/api/streams") == 401
    assert console.status("/metrics") == 401
    assert console.status("/static/console.js") == 401
    assert console.status("/metrics", Authorization=f"Bearer {token}") == 200
    assert console.status("/metrics", Authorization="Bearer not-the-token-at-all") == 401
