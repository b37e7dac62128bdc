"""framebus.web: the console, `framebus web`.

A page that lists every stream the broker knows, live, with its figures and a view of it;
`/api/streams` (JSON) and `/metrics` (Prometheus) from the same figures. Served by aiohttp
on one asyncio loop, the loop framebus.aio's subscribers run on.

=============  =========================================================
module         what
=============  =========================================================
``app``        the aiohttp Application: routes, static files, live views
``live``       live views of a stream: fMP4 over a WebSocket, MJPEG, previews
=============  =========================================================

Needs the ``web`` extra: ``pip install 'framebus[web]'``.
"""
