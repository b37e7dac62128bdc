"""The console's live routes: every stream in the browser, as it is.

``install(app, broker=...)`` adds:

- ``GET /live/{name}``: a WebSocket. First a text message, JSON: ``{"mime": ..., "jpeg":
  url-or-null, "codec", "width", "height"}`` when the stream's packets play over Media
  Source Extensions; ``{"jpeg": url, "reason": ...}`` when they cannot (no packets, a
  codec MSE does not take) but pixels can be shown as MJPEG; ``{"error": ...}`` when
  nothing can. Then binary messages: the fMP4 init segment, then fragments from a key
  frame, one per packet. Close code 4001: the stream restarted, reconnect.
- ``GET /jpeg/{name}?fps=10&quality=80``: multipart/x-mixed-replace MJPEG from pixels.
- ``GET /preview/{name}.jpg?width=640``: the newest picture, from key frames where the
  stream has packets (previews.py).

An unknown stream is a 404 with a message (over the WebSocket: ``{"error"}`` and close
code 4404, since a browser's WebSocket cannot read an HTTP status). Nothing runs for a
stream nobody watches: feeds.py starts a stream's reader with its first viewer and stops
it with its last.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any, NamedTuple

import zmq
from aiohttp import WSMsgType, web

from .. import config
from ..discovery import BrokerClient
from ..errors import BrokerUnavailable, InvalidName, StreamNotFound
from ..names import validate_stream_name
from ..packets import where
from ..shm.segment import SHM_DIR
from .feeds import Feed, FeedFailed, JpegFeed, LiveFeed
from .previews import PreviewFailed, Previews
from .viewers import Viewer

log = logging.getLogger(__name__)

#: MJPEG's default rate and quality: a fallback view, at a fraction of full-rate JPEG's CPU.
JPEG_FPS = 10.0
JPEG_QUALITY = 80
PREVIEW_WIDTH = 640
#: WebSocket close codes (4000-4999 are the application's).
UNKNOWN, BAD_NAME = 4404, 4400
#: A sender looks this often whether its client is still there while no chunk comes.
LOOK_EVERY = 1.0


class Kinds(NamedTuple):
    """What a stream has, on this host or another (read through its relay)."""

    frames: bool
    packets: bool
    #: Known only as dead (the broker keeps a dead producer's streams listed a while):
    #: said at once, rather than after a feed's wait for a frame that never comes.
    dead: bool = False


def kinds_of(name: str, broker: str | None) -> Kinds:
    """Ask the broker (blocking: run in a thread); without one, the rings on this host."""
    try:
        with BrokerClient(broker, timeout=0.5) as client:
            frames = _registered(client, name, "frames")
            packets = _registered(client, name, "packets")
    except BrokerUnavailable:
        return Kinds(os.path.exists(SHM_DIR + config.segment_name(name)),
                     os.path.exists(SHM_DIR + where.segment_name(name)))
    alive = [state for state in (frames, packets) if state is not None]
    return Kinds(frames is not None, packets is not None,
                 dead=bool(alive) and not any(alive))


def _registered(client: BrokerClient, name: str, kind: str) -> bool | None:
    """Whether the stream's *kind* is alive; None when the broker does not know it."""
    try:
        return client.lookup(name, kind=kind).alive
    except StreamNotFound:
        return None


class Hub:
    """The app's feeds, previews and the threads and ZeroMQ context they share."""

    def __init__(self, broker: str | None) -> None:
        self.broker = broker
        self.context = zmq.Context()
        self.executor = ThreadPoolExecutor(16, thread_name_prefix="framebus-web")
        self.feeds: dict[tuple[Any, ...], Feed] = {}
        self.previews = Previews(broker, self.context, self.executor)

    async def kinds(self, name: str) -> Kinds:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, kinds_of, name, self.broker)

    def feed(self, cls: type[Feed], name: str, **options: Any) -> Feed:
        """The stream's running feed of this kind and options, else a new one."""
        key = (cls, name, *sorted(options.items()))
        feed = self.feeds.get(key)
        if feed is None:
            feed = cls(name, broker=self.broker, context=self.context,
                       executor=self.executor, on_end=lambda f: self._ended(key, f), **options)
            self.feeds[key] = feed
        return feed

    def _ended(self, key: tuple[Any, ...], feed: Feed) -> None:
        if self.feeds.get(key) is feed:
            del self.feeds[key]

    async def stop(self, app: web.Application | None = None) -> None:
        """Every feed stopped (its viewers told: close code 1001) and awaited."""
        feeds = list(self.feeds.values())
        for feed in feeds:
            feed.stop()
        await asyncio.gather(*(feed.wait_stopped() for feed in feeds))

    async def close(self, app: web.Application | None = None) -> None:
        await self.stop()
        await asyncio.to_thread(self.executor.shutdown, True, cancel_futures=True)
        self.context.destroy(linger=0)


HUB = web.AppKey("framebus.web.live", Hub)


def install(app: web.Application, *, broker: str | None) -> None:
    """Add the live routes to *app*, and the hooks that stop everything they started."""
    hub = Hub(broker)
    app[HUB] = hub
    app.router.add_get("/live/{name}", live, name="framebus-live")
    app.router.add_get("/jpeg/{name}", mjpeg, name="framebus-jpeg")
    app.router.add_get("/preview/{name}.jpg", preview, name="framebus-preview")
    app.on_shutdown.append(hub.stop)  # open sockets closed before aiohttp waits on them
    app.on_cleanup.append(hub.close)


# -- GET /live/{name} ----------------------------------------------------------------------


async def live(request: web.Request) -> web.StreamResponse:
    hub, name = request.app[HUB], request.match_info["name"]
    ws = web.WebSocketResponse(compress=False, heartbeat=20)  # deflating video: CPU for 0
    if not ws.can_prepare(request).ok:
        return web.Response(status=426, text=f"/live/{name} is a WebSocket: open it with one")
    await ws.prepare(request)
    try:
        validate_stream_name(name)
    except InvalidName as exc:
        return await _refuse(ws, {"error": str(exc)}, BAD_NAME)
    kinds = await hub.kinds(name)
    if not kinds.frames and not kinds.packets:
        return await _refuse(ws, {"error": f"no stream named {name!r}"}, UNKNOWN)
    if kinds.dead:
        return await _refuse(ws, {"error": _dead(name)}, 1000)
    jpeg = _jpeg_url(request, name) if kinds.frames else None
    if not kinds.packets:
        return await _refuse(ws, {"jpeg": jpeg, "reason": f"{name} has no packet stream"},
                             1000)
    feed = hub.feed(LiveFeed, name)
    try:
        viewer = await feed.join()
    except FeedFailed as exc:
        reply = {"jpeg": jpeg, "reason": str(exc)} if jpeg else {"error": str(exc)}
        return await _refuse(ws, reply, 1000)
    assert isinstance(feed, LiveFeed)
    try:
        await ws.send_str(json.dumps({**feed.header, "jpeg": jpeg}))
        await _serve(ws, viewer)
    finally:
        feed.leave(viewer)
    return ws


async def _refuse(ws: web.WebSocketResponse, reply: dict[str, Any],
                  code: int) -> web.WebSocketResponse:
    await ws.send_str(json.dumps(reply))
    await ws.close(code=code, message=str(reply.get("error") or reply.get("reason"))[:120]
                   .encode())
    return ws


async def _serve(ws: web.WebSocketResponse, viewer: Viewer) -> None:
    """Send the viewer's chunks until the feed ends or the client goes (it says nothing:
    reading only tells when it has gone)."""
    sender = asyncio.create_task(_send(ws, viewer))
    try:
        async for message in ws:
            if message.type == WSMsgType.ERROR:
                break
    finally:
        sender.cancel()
        await asyncio.gather(sender, return_exceptions=True)


async def _send(ws: web.WebSocketResponse, viewer: Viewer) -> None:
    try:
        while (chunk := await viewer.get()) is not None:
            await ws.send_bytes(chunk)
    except ConnectionResetError:
        return
    code, reason = viewer.end or (1000, "")
    await ws.close(code=code, message=reason[:120].encode())


def _dead(name: str) -> str:
    return f"{name} is not running: its producer is gone"


def _jpeg_url(request: web.Request, name: str) -> str:
    return str(request.app.router["framebus-jpeg"].url_for(name=name))


# -- GET /jpeg/{name} ----------------------------------------------------------------------


def _number(request: web.Request, key: str, default: float, low: float, high: float) -> float:
    try:
        value = float(request.query.get(key, default))
    except ValueError:
        raise web.HTTPBadRequest(text=f"{key} must be a number") from None
    if not low <= value <= high:
        raise web.HTTPBadRequest(text=f"{key} must be from {low:g} to {high:g}")
    return value


async def _pixels_of(request: web.Request) -> str:
    """The stream's name, after a 400 for a bad one and a 404 for one without pixels."""
    name = request.match_info["name"]
    try:
        validate_stream_name(name)
    except InvalidName as exc:
        raise web.HTTPBadRequest(text=str(exc)) from None
    kinds = await request.app[HUB].kinds(name)
    if not kinds.frames:
        raise web.HTTPNotFound(text=f"no stream named {name!r}" if not kinds.packets
                               else f"{name} has packets but no pixel stream to show")
    if kinds.dead:
        raise web.HTTPServiceUnavailable(text=_dead(name))
    return name


async def mjpeg(request: web.Request) -> web.StreamResponse:
    name = await _pixels_of(request)
    fps = _number(request, "fps", JPEG_FPS, 0.1, 60)
    quality = int(_number(request, "quality", JPEG_QUALITY, 1, 100))
    feed = request.app[HUB].feed(JpegFeed, name, fps=fps, quality=quality)
    try:
        viewer = await feed.join()
    except FeedFailed as exc:
        raise web.HTTPServiceUnavailable(text=str(exc)) from None
    response = web.StreamResponse(headers={
        "Content-Type": "multipart/x-mixed-replace; boundary=frame",
        "Cache-Control": "no-store"})
    try:
        await response.prepare(request)
        while (jpeg := await _next_or_gone(request, viewer)) is not None:
            await response.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: "
                                 + str(len(jpeg)).encode() + b"\r\n\r\n" + jpeg + b"\r\n")
    except ConnectionResetError:
        pass
    finally:
        feed.leave(viewer)
    return response


async def _next_or_gone(request: web.Request, viewer: Viewer) -> bytes | None:
    """The next JPEG; None once the feed ended or the client went away (a stream that
    sends nothing would otherwise keep a gone client's feed running)."""
    while True:
        try:
            return await viewer.get(timeout=LOOK_EVERY)
        except asyncio.TimeoutError:  # TimeoutError from 3.11 on
            if request.transport is None or request.transport.is_closing():
                return None


# -- GET /preview/{name}.jpg ---------------------------------------------------------------


async def preview(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    try:
        validate_stream_name(name)
    except InvalidName as exc:
        raise web.HTTPBadRequest(text=str(exc)) from None
    width = int(_number(request, "width", PREVIEW_WIDTH, 0, 8192))
    hub = request.app[HUB]
    kinds = await hub.kinds(name)
    if not kinds.frames and not kinds.packets:
        raise web.HTTPNotFound(text=f"no stream named {name!r}")
    if kinds.dead:
        raise web.HTTPServiceUnavailable(text=_dead(name))
    try:
        jpeg = await hub.previews.get(name, width, kinds.packets)
    except PreviewFailed as exc:
        raise web.HTTPServiceUnavailable(text=str(exc)) from None
    return web.Response(body=jpeg, content_type="image/jpeg",
                        headers={"Cache-Control": "no-store"})
