"""The console's aiohttp Application: the page, the API, /metrics, the live views.

One Watch (framebus.web.streams) lists the broker's streams for all of them. With
credentials, every route asks for the login (framebus.web.auth).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path

from aiohttp import web

from . import api, auth, live, metrics
from .streams import Watch

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"


def make_app(*, broker: str | None, credentials: auth.Credentials | None = None,
             every: float | None = None, loopback: bool = True) -> web.Application:
    """The console for the broker at *broker* (None: $FRAMEBUS_BROKER, else loopback),
    listing its streams every *every* seconds (None: streams.EVERY); *loopback*: it is
    served on loopback only, so asked only for loopback names."""
    app = web.Application()
    auth.guard(app, loopback=loopback)
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
    live.install(app, broker=broker)  # /live, /jpeg, /preview (framebus.web.live)
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
