"""framebus.web: the console, `framebus web`.

A page that lists every stream the broker knows, live, with its figures and a view of it;
`/api/streams` (JSON) and `/metrics` (Prometheus) from the same figures. Served by aiohttp
on one asyncio loop, the loop framebus.aio's subscribers run on.

=============  =========================================================
module         what
=============  =========================================================
``app``        the aiohttp Application: routes, static files, live views
``streams``    the Watch: one broker listing a poll, every stream's row and history
``api``        /api/streams (JSON), /api/events (the rows' changes, a WebSocket)
``metrics``    /metrics: a Prometheus collector over the Watch's rows
``auth``       the login (a token in the site's key directory) and HTTPS
``live``       live views of a stream: fMP4 over a WebSocket, MJPEG, previews
``static/``    the page: console.js, charts.js (SVG), console.css; player.js (live's)
=============  =========================================================

Needs the ``web`` extra: ``pip install 'framebus[web]'``.
"""
