"""framebus.web.live against real producers (a live libx264 camera, `framebus decode` of a
clip, the decoder's pixel pattern), a real broker, a real aiohttp server, and, for the
player, Debian's Chromium through Playwright."""

from __future__ import annotations

import asyncio
import concurrent.futures
import io
import json
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import av
import numpy as np
import pytest
import simplejpeg
from aiohttp import web
from conftest import wait_until

from framebus.packets import CodecInfo, PacketPublisher
from framebus.testing import media
from framebus.testing.camera import BARS, Camera, bars, read_code
from framebus.web import live
from framebus.web.viewers import RESTARTED, Viewer

pytest_plugins = ["browser"]  # tests/browser.py: Debian's chromium, `page`

STATIC = Path(live.__file__).parent / "static"
PAGE = """<!doctype html><html><body style="margin:0;background:#000">
<video id="v" width="640" height="480" style="display:block"></video>
<script src="/static/player.js"></script>
<script>
  window.errors = [];
  window.player = framebusPlayer.attach(document.getElementById("v"), NAME,
                                        {onError: (m) => window.errors.push(m)});
</script></body></html>"""


class Server:
    """live.install() on a bare aiohttp app, served on loopback from a thread of its own."""

    def __init__(self, broker: str) -> None:
        self.app = web.Application()
        live.install(self.app, broker=broker)
        self.app.router.add_static("/static", STATIC)
        self.app.router.add_get("/watch/{name}", self._page)
        self.loop = asyncio.new_event_loop()
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()
        assert self._started.wait(10), "the server did not start"

    async def _page(self, request: web.Request) -> web.Response:
        name = json.dumps(request.match_info["name"])
        return web.Response(text=PAGE.replace("NAME", name), content_type="text/html")

    def _serve(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.runner = web.AppRunner(self.app, shutdown_timeout=2)
        self.loop.run_until_complete(self.runner.setup())
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        self.loop.run_until_complete(site.start())
        self.url = f"http://127.0.0.1:{self.runner.addresses[0][1]}"
        self._started.set()
        self.loop.run_forever()
        self.loop.run_until_complete(self.runner.cleanup())
        self.loop.close()

    @property
    def hub(self) -> live.Hub:
        return self.app[live.HUB]

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(15)


@pytest.fixture
def server(broker) -> Iterator[Server]:
    s = Server(broker.address)
    try:
        yield s
    finally:
        s.close()


@pytest.fixture
def camera(broker, stream_name) -> Iterator[Camera]:
    with Camera(stream_name, 320, 240, fps=25, gop=25, broker=broker.address) as cam:
        yield cam


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    pictures = (bars(i, 320, 240) for i in range(50))
    return media.encode_frames(tmp_path_factory.mktemp("web") / "bars.mp4", pictures, 320, 240)


def run(coro):
    """*coro* to its end on a loop of its own thread: Playwright's sync API keeps a loop of
    its own in the test's thread once a browser test ran."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, asyncio.wait_for(coro, 30)).result()


async def watch(url: str, fragments: int) -> tuple[dict, list[bytes], int | None]:
    """(header, binary messages, close code) of a viewer of /live that reads *fragments*."""
    async with aiohttp.ClientSession() as session, session.ws_connect(url) as ws:
        header = json.loads((await ws.receive()).data)
        chunks: list[bytes] = []
        while len(chunks) < fragments + 1:
            message = await ws.receive()
            if message.type != aiohttp.WSMsgType.BINARY:
                break
            chunks.append(message.data)
        return header, chunks, ws.close_code


def demux(data: bytes) -> list[av.Packet]:
    with av.open(io.BytesIO(data), format="mp4") as container:
        return [p for p in container.demux(video=0) if p.size]


# -- the WebSocket ---------------------------------------------------------------------------


def test_a_decoders_packets_reach_the_viewer_as_its_own_bytes_from_a_key_frame(
        broker, server, procs, clip, stream_name):
    procs.framebus("decode", str(clip), "--name", stream_name, "--loop", "--decode", "demand")
    wait_until(lambda: live.kinds_of(stream_name, broker.address).packets, 10,
               what="the packet stream")
    header, chunks, _ = run(watch(f"{server.url}/live/{stream_name}", 40))
    assert header["mime"] == 'video/mp4; codecs="avc1.42c00d"'  # ultrafast 320x240: level 1.3
    assert header["jpeg"] == f"/jpeg/{stream_name}"  # and pixels too, for a fallback
    assert chunks[0][4:8] == b"ftyp"
    packets = demux(b"".join(chunks))
    with av.open(str(clip)) as container:
        own = {bytes(p) for p in container.demux(video=0) if p.size}
    assert packets[0].is_keyframe
    assert len(packets) == 40 and all(bytes(p) in own for p in packets)
    dts = [p.dts for p in packets]
    assert dts == sorted(dts)  # across the --loop too


def test_viewers_share_one_feed_that_stops_with_the_last(server, camera):
    url = f"{server.url}/live/{camera.name}"

    async def two_viewers() -> tuple[int, list[bytes], list[bytes]]:
        async with aiohttp.ClientSession() as session:
            a = await session.ws_connect(url)
            b = await session.ws_connect(url)
            got = [[], []]
            for ws, out in ((a, got[0]), (b, got[1])):
                json.loads((await ws.receive()).data)
                while len(out) < 6:
                    out.append((await ws.receive()).data)
            feeds = len(server.hub.feeds)
            await a.close()
            await b.close()
            return feeds, got[0], got[1]

    feeds, a, b = run(two_viewers())
    assert feeds == 1
    assert a[0] == b[0]  # one muxer: the same init segment
    assert demux(b"".join(a))[0].is_keyframe and demux(b"".join(b))[0].is_keyframe
    wait_until(lambda: not server.hub.feeds, 5, what="the feed to stop")
    wait_until(lambda: camera._packets.subscribers == 0, 5, what="its packet subscriber to go")


def test_a_restarted_producer_closes_its_viewers_with_the_code_to_reconnect(
        broker, server, stream_name):
    url = f"{server.url}/live/{stream_name}"

    async def restart() -> tuple[int | None, dict, list[bytes]]:
        async with aiohttp.ClientSession() as session:
            with Camera(stream_name, 320, 240, broker=broker.address):
                ws = await session.ws_connect(url)
                await ws.receive()
                await ws.receive()
            with Camera(stream_name, 320, 240, broker=broker.address, global_header=True):
                while (await ws.receive()).type == aiohttp.WSMsgType.BINARY:
                    pass
                code = ws.close_code
                header, chunks, _ = await watch(url, 2)
        return code, header, chunks

    code, header, chunks = run(restart())
    assert code == RESTARTED  # the player reconnects on it, and so did this viewer:
    assert header["mime"].startswith('video/mp4; codecs="avc1.')
    assert demux(b"".join(chunks))[0].is_keyframe


def test_a_killed_producers_stream_is_said_not_running_at_once(
        broker, server, procs, clip, stream_name):
    decoder = procs.framebus("decode", str(clip), "--name", stream_name, "--loop")
    wait_until(lambda: live.kinds_of(stream_name, broker.address).packets, 10,
               what="the packet stream")
    procs.stop(decoder, signal.SIGKILL)
    wait_until(lambda: live.kinds_of(stream_name, broker.address).dead, 10,
               what="the broker to mark it dead")
    start = time.monotonic()
    header, chunks, _ = run(watch(f"{server.url}/live/{stream_name}", 1))
    assert header == {"error": f"{stream_name} is not running: its producer is gone"}
    assert chunks == [] and time.monotonic() - start < 2  # not a feed's 10 s wait


def test_packets_of_a_codec_mse_does_not_take_fall_back_to_mjpeg(broker, server, stream_name):
    codec = CodecInfo("hevc", b"", (1, 90000), 320, 240)
    with Camera(stream_name, 320, 240, packets=False, pixels=True, broker=broker.address), \
            PacketPublisher(stream_name, codec, broker=broker.address) as pub:
        for seq in range(3):  # in the ring: a new feed reads them from its preroll
            pub.publish(b"\x00\x00\x01\x26\x01" + bytes(100), pts=seq * 3600,
                        dts=seq * 3600, keyframe=True)
        header, chunks, _ = run(watch(f"{server.url}/live/{stream_name}", 1))
    assert header == {"jpeg": f"/jpeg/{stream_name}", "reason": "hevc packets do not play in "
                      "this browser's MSE (H.264 does)"}
    assert chunks == []


def test_an_unknown_stream_is_said_over_the_socket_and_as_404s(server, stream_name):
    header, chunks, code = run(watch(f"{server.url}/live/{stream_name}-none", 1))
    assert header == {"error": f"no stream named '{stream_name}-none'"}
    assert chunks == [] and code == live.UNKNOWN

    async def get(path: str) -> tuple[int, str]:
        async with aiohttp.ClientSession() as session, session.get(server.url + path) as r:
            return r.status, await r.text()

    for path in (f"/jpeg/{stream_name}-none", f"/preview/{stream_name}-none.jpg"):
        assert run(get(path)) == (404, f"no stream named '{stream_name}-none'")
    assert run(get("/jpeg/bad%20name"))[0] == 400


# -- pictures --------------------------------------------------------------------------------


def bar_colours(rgb: np.ndarray) -> list[tuple[int, int, int]]:
    """The colour at the middle of each bar of a picture of the bars."""
    height, width = rgb.shape[:2]
    y = height * 3 // 8
    return [tuple(int(c) for c in rgb[y, int((i + 0.5) * width / len(BARS))][:3])
            for i in range(len(BARS))]


def assert_bars(rgb: np.ndarray) -> None:
    """Each bar within 64 of its colour in every channel: 4:2:0 and a fast encoder bleed
    colour by some tens, while any other bar is off by 255 in some channel."""
    for got, want in zip(bar_colours(rgb), BARS):
        assert max(abs(g - w) for g, w in zip(got, want)) < 64, (bar_colours(rgb), BARS)


def test_a_preview_is_the_newest_key_frame_decoded(server, camera):
    async def get() -> tuple[int, bytes]:
        async with aiohttp.ClientSession() as session, session.get(
                f"{server.url}/preview/{camera.name}.jpg") as r:
            return r.status, await r.read()

    wait_until(lambda: camera.frames > 30, 10, what="a second key frame")
    status, jpeg = run(get())
    made = camera.frames
    assert status == 200
    picture = simplejpeg.decode_jpeg(jpeg, "RGB")
    assert picture.shape == (240, 320, 3)
    assert_bars(picture)
    index = read_code(picture)
    assert index % 25 == 0 and made - index <= 30, (index, made)  # the newest key frame


def test_mjpeg_from_pixels_of_a_stream_without_packets(broker, server, stream_name):
    async def parts(count: int) -> tuple[str, list[bytes]]:
        async with aiohttp.ClientSession() as session, session.get(
                f"{server.url}/jpeg/{stream_name}?fps=25") as r:
            reader = aiohttp.MultipartReader.from_response(r)
            out = []
            while len(out) < count:
                part = await reader.next()
                out.append(await part.read())
            return r.headers["Content-Type"], out

    with Camera(stream_name, 320, 240, packets=False, pixels=True, broker=broker.address):
        kind, jpegs = run(parts(3))
    assert kind == "multipart/x-mixed-replace; boundary=frame"
    for jpeg in jpegs:
        assert_bars(simplejpeg.decode_jpeg(jpeg, "RGB"))
    wait_until(lambda: not server.hub.feeds, 5, what="the MJPEG feed to stop")


def test_a_slow_viewer_is_dropped_to_the_next_key_frame_not_queued_without_bound():
    viewer = Viewer(limit=3)
    viewer.seed([b"init"], key=False)
    for chunk in (b"k1", b"d1", b"d2", b"d3", b"d4", b"d5", b"k2", b"d6"):
        viewer.offer(chunk, chunk.startswith(b"k"))

    async def drain() -> list[bytes]:
        out = []
        while True:
            try:
                out.append(await viewer.get(timeout=0.05))
            except asyncio.TimeoutError:
                return out

    # init k1 d1 d2 overflowed the limit: thrown away, and d3..d5 passed over until k2.
    assert run(drain()) == [b"k2", b"d6"]
    assert viewer.dropped == 4


# -- in the browser --------------------------------------------------------------------------


def screenshot_rgb(element) -> np.ndarray:
    import cv2

    png = np.frombuffer(element.screenshot(), np.uint8)
    return cv2.cvtColor(cv2.imdecode(png, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def test_the_video_plays_the_stream_and_shows_its_pattern(server, camera, page):
    page.goto(f"{server.url}/watch/{camera.name}")
    page.wait_for_function("player.mode === 'mse' && document.getElementById('v').currentTime > 1"
                           " && errors.length === 0", timeout=15000)
    frames = "document.getElementById('v').getVideoPlaybackQuality().totalVideoFrames"
    before = page.evaluate(frames)
    page.wait_for_function(f"{frames} > {before} + 10", timeout=5000)
    assert page.evaluate("document.getElementById('v').currentTime") > 1
    assert_bars(screenshot_rgb(page.locator("#v")))
    camera.close()  # a producer restart: the server closes with 4001, the player reconnects
    with Camera(camera.name, 320, 240, broker=camera.broker):
        page.wait_for_function("player.connections === 2 && player.mode === 'mse' &&"
                               " errors.length === 0", timeout=15000)
        now = "document.getElementById('v').currentTime"
        page.wait_for_function(f"{now} > 0.2", timeout=10000)
        start = page.evaluate(now)
        page.wait_for_function(f"{now} > {start} + 0.5", timeout=5000)


def test_a_stream_without_packets_falls_back_to_mjpeg(broker, server, page, stream_name):
    with Camera(stream_name, 320, 240, packets=False, pixels=True, broker=broker.address):
        page.goto(f"{server.url}/watch/{stream_name}")
        page.wait_for_function("player.mode === 'mjpeg' && document.querySelector('img') &&"
                               " document.querySelector('img').naturalWidth === 320",
                               timeout=10000)
        assert page.evaluate("document.getElementById('v').style.display") == "none"
        assert_bars(screenshot_rgb(page.locator("img")))
        page.evaluate("player.close()")
        assert page.evaluate("document.querySelector('img')") is None
    wait_until(lambda: not server.hub.feeds, 5, what="the MJPEG feed to stop")


def test_an_unknown_stream_is_the_players_error(server, page, stream_name):
    page.goto(f"{server.url}/watch/{stream_name}-none")
    page.wait_for_function("errors.length > 0", timeout=5000)
    assert page.evaluate("errors") == [f"no stream named '{stream_name}-none'"]
    assert page.evaluate("player.mode") is None
