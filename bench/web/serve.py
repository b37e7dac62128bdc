"""A bare console server for the bench when the full one is not there: live.install() and
the static files on an aiohttp app (python -m bench.web.serve PORT BROKER)."""

from __future__ import annotations

import sys
from pathlib import Path

from aiohttp import web

from framebus.web import live


def main() -> None:
    port, broker = int(sys.argv[1]), sys.argv[2]
    app = web.Application()
    live.install(app, broker=broker)
    app.router.add_static("/static", Path(live.__file__).parent / "static")
    web.run_app(app, host="127.0.0.1", port=port, print=None, shutdown_timeout=2)


if __name__ == "__main__":
    main()
