"""The console's aiohttp Application: the page, the API, /metrics, the live views.

One Watch (framebus.web.streams) lists the broker's streams for all of them. With
credentials, every route asks for the login (framebus.web.auth).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path

from aiohttp import web

from . import api, auth, metrics
from .streams import Watch

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"


def make_app(*, broker: str | None, credentials: auth.Credentials | None = None,
             every: float | None = None) -> web.Application:
    """The console for the broker at *broker* (None: $FRAMEBUS_BROKER, else loopback),
    listing its streams every *every* seconds (None: streams.EVERY)."""
    app = web.Application()
    if credentials is not None:
        auth.install(app, credentials)  # first: its middleware guards every route below
    watch = Watch(broker) if every is None else Watch(broker, every=every)
    app[api.WATCH] = watch
    app[api.SOCKETS] = set()
    app.router.add_get("/", _index)
    app.router.add_static("/static/", STATIC)
    api.add_routes(app)
    metrics.install(app, watch)
    app.cleanup_ctx.append(_watching)
    app.on_shutdown.append(api.close_sockets)
    _install_live(app, broker)
    return app


async def _index(request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})


async def _watching(app: web.Application) -> AsyncIterator[None]:
    """The Watch lists the broker's streams while the app runs."""
    task = asyncio.create_task(app[api.WATCH].run(), name="framebus-web-watch")
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def _install_live(app: web.Application, broker: str | None) -> None:
    """The live views (framebus.web.live: /live, /jpeg, /preview), built alongside the
    page; imported here so that the page runs while that module is still missing."""
    try:
        live = importlib.import_module("framebus.web.live")
    except ModuleNotFoundError as exc:
        if exc.name != "framebus.web.live":
            raise  # live.py is there but something it needs is not: say so
        log.warning("framebus.web.live is missing: no live views")
        return
    live.install(app, broker=broker)
