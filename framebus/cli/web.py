"""`framebus web`: the console, a page of every stream live, on the asyncio loop."""

from __future__ import annotations

import asyncio
import logging
import signal
import ssl
from typing import TYPE_CHECKING

import click

from ..errors import FramebusError, KeyFileError
from ..keys import is_local
from ..options import broker_option
from .common import fail, log

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
              help="Where to serve the console. Beyond loopback it needs --keys.")
@click.option("--keys", "keys_dir", type=click.Path(file_okay=False), default=None,
              help="The site's key directory: web.token (the login; then every page asks "
                   "for it), web.crt and web.key (HTTPS).")
@click.option("--make-token", is_flag=True,
              help="Write a new random DIR/web.token for --keys DIR, and exit.")
@broker_option
def web(bind: tuple[str, int], keys_dir: str | None, make_token: bool, broker: str) -> None:
    """Serve the console: every stream live in the browser, /api/streams, /metrics."""
    try:
        from ..web import auth
        from ..web.app import make_app
    except ModuleNotFoundError as exc:
        raise click.ClickException(f"the console needs the web extra ({exc}): "
                                   "pip install 'framebus[web]'") from None
    if make_token:
        if keys_dir is None:
            raise click.UsageError("--make-token needs --keys DIR")
        try:
            click.echo(f"wrote {auth.make_token(keys_dir)}")
        except FramebusError as exc:
            fail(exc)
        return
    host, port = bind
    try:
        credentials = None if keys_dir is None else auth.Credentials.from_dir(keys_dir)
        if credentials is None and not is_local(f"tcp://{host}:{port}"):
            raise KeyFileError(f"{host} is beyond loopback: the console serves it only with a "
                               "login; pass --keys DIR with DIR/web.token (framebus web "
                               "--keys DIR --make-token)")
        tls = None if credentials is None else credentials.ssl_context()
    except FramebusError as exc:
        fail(exc)
    if tls is None and not is_local(f"tcp://{host}:{port}"):
        log.warning("serving plain HTTP beyond loopback: the token and every picture cross "
                    "the network in clear; put web.crt and web.key in %s for HTTPS", keys_dir)
    app = make_app(broker=broker, credentials=credentials,
                   loopback=is_local(f"tcp://{host}:{port}"))
    asyncio.run(_serve(app, host, port, tls))


async def _serve(app: aioweb.Application, host: str, port: int,
                 tls: ssl.SSLContext | None) -> None:
    """Serve *app* until SIGINT or SIGTERM, then close every connection and hook."""
    from aiohttp import web as aioweb

    # A line a request only with -vv: the previews alone ask several times a second.
    from aiohttp.log import access_logger

    verbose = log.isEnabledFor(logging.DEBUG)
    runner = aioweb.AppRunner(app, handle_signals=False,
                              access_log=access_logger if verbose else None)
    await runner.setup()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        site = aioweb.TCPSite(runner, host, port, ssl_context=tls)
        try:
            await site.start()
        except OSError as exc:
            raise click.ClickException(f"cannot serve at {host}:{port}: {exc.strerror}") from None
        log.info("console at %s://%s:%d/", "http" if tls is None else "https",
                 host if ":" not in host else f"[{host}]", port)
        await stop.wait()
    finally:
        await runner.cleanup()
