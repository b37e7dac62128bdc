"""/api/streams (JSON) and /api/events (a WebSocket of the rows' changes), over the Watch.

A browser's WebSocket first gets everything: every row and its chart history. Then, after
each listing, only what changed: the rows that differ from what it was sent, the names
gone, and a chart point per stream. A browser slow to read misses no change, as it is
always sent the difference to what it has, however many listings it skipped.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiohttp import WSMsgType, web

from .streams import Row, Watch

log = logging.getLogger(__name__)

WATCH = web.AppKey("watch", Watch)
#: The open WebSockets, for the shutdown to close.
SOCKETS = web.AppKey("sockets", set[web.WebSocketResponse])


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/streams", streams)
    app.router.add_get("/api/events", events)


async def streams(request: web.Request) -> web.Response:
    """Every stream the broker knows, with the figures `ls` and `stat` show."""
    return web.json_response(request.app[WATCH].snapshot())


async def events(request: web.Request) -> web.WebSocketResponse:
    watch = request.app[WATCH]
    ws = web.WebSocketResponse(heartbeat=20.0)
    await ws.prepare(request)
    request.app[SOCKETS].add(ws)
    # The browser sends nothing; a task reads, so that its close is seen at once.
    reader = asyncio.ensure_future(_until_closed(ws))
    try:
        sent: dict[str, Row] = dict(watch.rows)
        seen = watch.version
        await ws.send_json({"full": True, "error": watch.error, "updated": watch.updated,
                            "streams": sent,
                            "history": {n: list(h) for n, h in watch.history.items()}})
        while True:
            change = asyncio.ensure_future(watch.changed(seen))
            await asyncio.wait({change, reader}, return_when=asyncio.FIRST_COMPLETED)
            if reader.done():
                change.cancel()
                break
            seen = change.result()
            await ws.send_json(_changes(watch, sent))
            sent = dict(watch.rows)
    except ConnectionResetError:
        pass  # the browser went away mid-send
    finally:
        reader.cancel()
        request.app[SOCKETS].discard(ws)
    return ws


async def _until_closed(ws: web.WebSocketResponse) -> None:
    async for message in ws:
        if message.type == WSMsgType.ERROR:
            break


def _changes(watch: Watch, sent: dict[str, Row]) -> dict[str, Any]:
    rows = watch.rows
    return {
        "error": watch.error, "updated": watch.updated,
        "streams": {n: r for n, r in rows.items() if sent.get(n) != r},
        "gone": sorted(sent.keys() - rows.keys()),
        "points": {n: h[-1] for n, h in watch.history.items() if h},
    }


async def close_sockets(app: web.Application) -> None:
    """On shutdown: a page's WebSocket would otherwise hold the server open."""
    sockets: set[web.WebSocketResponse] = app[SOCKETS]
    for ws in list(sockets):
        await ws.close(code=1001, message=b"server shutdown")
