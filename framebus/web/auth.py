"""The console's login: a token kept in the site's key directory, and HTTPS from there.

::

    framebus web --keys /etc/framebus/keys --make-token   # writes web.token (0600)
    framebus web --bind 0.0.0.0:8080 --keys /etc/framebus/keys

- ``DIR/web.token``: the secret a browser logs in with, at /login, or a program sends
  as ``Authorization: Bearer TOKEN`` (Prometheus's ``bearer_token_file``). Any text of
  16 characters or more: a token made by --make-token, or a password of the site's own.
- ``DIR/web.crt`` and ``DIR/web.key``: when both are there the console serves HTTPS.

A browser that logged in holds a cookie that is an HMAC of the token: nothing is kept on
the server, a restart logs nobody out, and a new token logs everybody out. Every route
(the page, the API, /metrics and the live views) needs it; only /login does not.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import html
import logging
import os
import secrets
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from ..errors import KeyFileError

log = logging.getLogger(__name__)

TOKEN_FILE, CERT_FILE, KEY_FILE = "web.token", "web.crt", "web.key"
MIN_TOKEN = 16
COOKIE = "framebus_console"
#: A wrong token waits this long for its answer: guessing a password gets slow.
WRONG_DELAY = 0.5

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class Credentials:
    """What the console asks of a browser, and the files of its HTTPS, if any."""

    token: str
    cert: Path | None = None
    key: Path | None = None

    @classmethod
    def from_dir(cls, directory: str | Path) -> Credentials:
        """The credentials kept in *directory*; KeyFileError says what is missing."""
        directory = Path(directory).expanduser()
        path = directory / TOKEN_FILE
        if not path.is_file():
            raise KeyFileError(f"no {path}: make one with `framebus web --keys {directory} "
                               "--make-token`, or write a password of 16 characters or more")
        if path.stat().st_mode & 0o077:
            raise KeyFileError(f"{path} is readable by others: chmod 600 it")
        token = path.read_text().strip()
        if len(token) < MIN_TOKEN:
            raise KeyFileError(f"{path} holds fewer than {MIN_TOKEN} characters")
        cert, key = directory / CERT_FILE, directory / KEY_FILE
        if cert.is_file() != key.is_file():
            raise KeyFileError(f"HTTPS needs both {cert} and {key}")
        return cls(token, *((cert, key) if cert.is_file() else (None, None)))

    def ssl_context(self) -> ssl.SSLContext | None:
        """The server's TLS context when the key directory has a certificate, else None."""
        if self.cert is None or self.key is None:
            return None
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        try:
            context.load_cert_chain(self.cert, self.key)
        except (OSError, ssl.SSLError) as exc:
            raise KeyFileError(f"cannot use {self.cert} and {self.key}: {exc}") from None
        return context

    def session(self) -> str:
        """The cookie of a browser that gave the right token."""
        return hmac.new(self.token.encode(), b"framebus console session",
                        hashlib.sha256).hexdigest()

    def admits(self, request: web.Request) -> bool:
        cookie = request.cookies.get(COOKIE, "")
        bearer = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        return (hmac.compare_digest(cookie.encode(), self.session().encode())
                or hmac.compare_digest(bearer.encode(), self.token.encode()))


def make_token(directory: str | Path) -> Path:
    """Write a new random DIR/web.token (0600, in a 0700 directory); refuses to replace one."""
    directory = Path(directory).expanduser()
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = directory / TOKEN_FILE
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise KeyFileError(f"{path} exists; remove it first to make a new token") from None
    with os.fdopen(fd, "w") as out:
        out.write(secrets.token_urlsafe(32) + "\n")
    return path


CREDENTIALS = web.AppKey("credentials", Credentials)
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")


def guard(app: web.Application, *, loopback: bool) -> None:
    """Refuse what a page of another site could make a browser ask: a WebSocket opened
    from another origin (WebSockets know no CORS, and on loopback no login stops them),
    and, on a console bound to loopback, a Host that is not a loopback name (a DNS
    rebinding: another site's name made to point at 127.0.0.1)."""
    app.middlewares.append(_same_origin_only if not loopback else _loopback_only)


@web.middleware
async def _loopback_only(request: web.Request, handler: Handler) -> web.StreamResponse:
    host = request.url.host or ""
    if not (host in LOOPBACK_NAMES or host.startswith("127.")):
        raise web.HTTPMisdirectedRequest(text=f"this console serves loopback, not {host!r}")
    return await _same_origin_only(request, handler)


@web.middleware
async def _same_origin_only(request: web.Request, handler: Handler) -> web.StreamResponse:
    origin = request.headers.get("Origin")
    if (request.headers.get("Upgrade", "").lower() == "websocket" and origin is not None
            and origin != f"{request.scheme}://{request.host}"):
        raise web.HTTPForbidden(text=f"a WebSocket from {origin} is not this console's")
    return await handler(request)


def install(app: web.Application, credentials: Credentials) -> None:
    """Require the login on every route of *app* but /login."""
    app[CREDENTIALS] = credentials
    app.middlewares.append(_require_login)
    app.router.add_get("/login", _login_form)
    app.router.add_post("/login", _login)


@web.middleware
async def _require_login(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.path == "/login" or request.app[CREDENTIALS].admits(request):
        return await handler(request)
    if request.method == "GET" and "text/html" in request.headers.get("Accept", ""):
        raise web.HTTPSeeOther("/login")  # a person, at the page: to the login
    raise web.HTTPUnauthorized(text="log in at /login, or send Authorization: Bearer TOKEN",
                               headers={"WWW-Authenticate": 'Bearer realm="framebus"'})


async def _login_form(request: web.Request, message: str = "",
                      status: int = 200) -> web.Response:
    return web.Response(text=_FORM.replace("{message}", html.escape(message)),
                        content_type="text/html", status=status)


async def _login(request: web.Request) -> web.Response:
    credentials = request.app[CREDENTIALS]
    form = await request.post()
    token = str(form.get("token", "")).strip()
    if not hmac.compare_digest(token.encode(), credentials.token.encode()):
        log.warning("console login refused from %s", request.remote)
        await asyncio.sleep(WRONG_DELAY)
        return await _login_form(request, "Wrong token.", status=403)
    response = web.HTTPSeeOther("/")
    response.set_cookie(COOKIE, credentials.session(), httponly=True, samesite="Strict",
                        secure=request.secure, path="/")
    raise response


_FORM = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>framebus: log in</title>
<style>body{font:16px system-ui,sans-serif;display:grid;place-items:center;height:90vh}
.error{color:#b00}</style></head>
<body><form method="post" action="/login">
<h1>framebus</h1>
<label>Token <input name="token" type="password" autofocus required></label>
<button type="submit">Log in</button>
<p class="error" id="message">{message}</p>
</form></body></html>
"""
