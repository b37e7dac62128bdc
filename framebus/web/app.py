"""The console's aiohttp Application: its routes, its static files, the live views."""

from __future__ import annotations

import importlib
import logging
from pathlib import Path

from aiohttp import web

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"


def make_app(*, broker: str | None) -> web.Application:
    """The console for the broker at *broker* (None: $FRAMEBUS_BROKER, else loopback)."""
    app = web.Application()
    app.router.add_get("/", _index)
    app.router.add_static("/static/", STATIC)
    _install_live(app, broker)
    return app


async def _index(request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC / "index.html")


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
