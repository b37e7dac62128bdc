"""`framebus web`: the console, a page of every stream live, on the asyncio loop."""

from __future__ import annotations

import asyncio
import signal
from typing import TYPE_CHECKING

import click

from ..options import broker_option
from .common import log

if TYPE_CHECKING:
    from aiohttp import web as aioweb


class BindType(click.ParamType):
    """HOST:PORT to listen at (an IPv6 host in brackets: [::1]:8080)."""

    name = "HOST:PORT"

    def convert(self, value: object, param: click.Parameter | None,
                ctx: click.Context | None) -> tuple[str, int]:
        if isinstance(value, tuple):
            return value
        host, _, port = str(value).rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            self.fail(f"{value!r} is not HOST:PORT, such as 127.0.0.1:8080", param, ctx)
        return host.strip("[]"), int(port)


@click.command()
@click.option("--bind", type=BindType(), default="127.0.0.1:8080", show_default=True,
              help="Where to serve the console.")
@broker_option
def web(bind: tuple[str, int], broker: str) -> None:
    """Serve the console: every stream live in the browser, /api/streams, /metrics."""
    try:
        from ..web.app import make_app
    except ModuleNotFoundError as exc:
        raise click.ClickException(f"the console needs the web extra ({exc}): "
                                   "pip install 'framebus[web]'") from None
    host, port = bind
    if not _loopback(host):
        raise click.ClickException(f"{host} is beyond loopback: the console serves it only "
                                   "with a login, which this version does not have yet")
    asyncio.run(_serve(make_app(broker=broker), host, port))


def _loopback(host: str) -> bool:
    return host.startswith("127.") or host in ("localhost", "::1")


async def _serve(app: aioweb.Application, host: str, port: int) -> None:
    """Serve *app* until SIGINT or SIGTERM, then close every connection and hook."""
    from aiohttp import web as aioweb

    runner = aioweb.AppRunner(app, handle_signals=False)
    await runner.setup()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        site = aioweb.TCPSite(runner, host, port)
        try:
            await site.start()
        except OSError as exc:
            raise click.ClickException(f"cannot serve at {host}:{port}: {exc.strerror}") from None
        log.info("console at http://%s:%d/", host if ":" not in host else f"[{host}]", port)
        await stop.wait()
    finally:
        await runner.cleanup()
