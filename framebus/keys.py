"""CurveZMQ keys: what a broker or relay bound beyond loopback requires of every client.

One key model for the whole site::

    framebus keygen server --dir /etc/framebus/keys        # the site's server key pair
    framebus keygen laptop --dir ~/.config/framebus/keys   # one pair per client

- A server (``framebus broker`` or ``framebus relay`` with ``--curve-keys DIR``)
  uses ``DIR/server.key_secret`` and admits only the client public keys found in
  ``DIR/authorized/`` (``*.key``, as pyzmq's authenticator reads them).
- A client names its key directory in ``$FRAMEBUS_KEYS``: its own pair,
  ``client.key`` and ``client.key_secret``, and ``server.key``, the public key of
  the servers it trusts. It then speaks CurveZMQ to every endpoint beyond loopback.

Secret keys are written owner-only (0600) in an owner-only directory (0700).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator

from .errors import FramebusError, KeyFileError
from .support.throttle import Throttle

log = logging.getLogger(__name__)

KEYS_ENV = "FRAMEBUS_KEYS"


def generate(name: str, directory: str | Path) -> tuple[Path, Path]:
    """Create NAME.key (public) and NAME.key_secret (secret, 0600) in *directory* (0700)."""
    if not name.replace("-", "").replace("_", "").isalnum():
        raise KeyFileError(f"key name {name!r}: use letters, digits, '-' and '_'")
    directory = Path(directory).expanduser()
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    public, secret = directory / f"{name}.key", directory / f"{name}.key_secret"
    for path in (public, secret):
        if path.exists():
            raise KeyFileError(f"{path} exists; remove it first to make a new pair")
    old_umask = os.umask(0o077)  # the secret file is never readable by others, not even briefly
    try:
        made_public, made_secret = zmq.auth.create_certificates(str(directory), name)
    finally:
        os.umask(old_umask)
    os.chmod(made_secret, 0o600)
    os.chmod(made_public, 0o644)
    return Path(made_public), Path(made_secret)


def _load(path: Path, secret: bool) -> tuple[bytes, bytes]:
    """The public key of a key file, and its secret key if *secret* (else b"")."""
    if not path.is_file():
        raise KeyFileError(f"no key file {path} (make one with `framebus keygen`)")
    try:
        public, secret_key = zmq.auth.load_certificate(str(path))
    except (OSError, ValueError) as exc:
        raise KeyFileError(f"cannot read key file {path}: {exc}") from None
    if secret and not secret_key:
        raise KeyFileError(f"{path} holds no secret key")
    if secret and path.stat().st_mode & 0o077:
        raise KeyFileError(f"{path} is readable by others: chmod 600 it")
    return public, secret_key or b""


@dataclass(frozen=True)
class ClientKeys:
    public: bytes
    secret: bytes
    server: bytes  # the server's public key

    @classmethod
    def from_dir(cls, directory: str | Path) -> ClientKeys:
        directory = Path(directory).expanduser()
        public, secret = _load(directory / "client.key_secret", secret=True)
        server, _ = _load(directory / "server.key", secret=False)
        return cls(public, secret, server)

    def apply(self, socket: zmq.Socket) -> None:
        socket.curve_secretkey = self.secret
        socket.curve_publickey = self.public
        socket.curve_serverkey = self.server


def client_keys() -> ClientKeys | None:
    """This client's keys, from ``$FRAMEBUS_KEYS``, or None when it is not set."""
    directory = os.environ.get(KEYS_ENV)
    return ClientKeys.from_dir(directory) if directory else None


def secure_client(socket: zmq.Socket, endpoint: str) -> None:
    """Make *socket* speak CurveZMQ if *endpoint* lies beyond loopback.

    Raises KeyFileError, naming what to do, when it does and no keys are set.
    """
    if is_local(endpoint):
        return
    keys = client_keys()
    if keys is None:
        raise KeyFileError(
            f"{endpoint} is beyond loopback, so it requires CurveZMQ: set ${KEYS_ENV} to a "
            "directory with client.key_secret and the server's server.key (framebus keygen)")
    keys.apply(socket)


class ServerKeys:
    """A server's key pair and the client keys it admits (pyzmq's ZAP authenticator)."""

    #: A refused key is logged at most once this often (seconds): clients retry every 0.1 s.
    LOG_REFUSAL_EVERY = 60.0

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory).expanduser()
        self.public, self.secret = _load(self.directory / "server.key_secret", secret=True)
        self.authorized = self.directory / "authorized"
        if not self.authorized.is_dir():
            raise KeyFileError(f"no directory {self.authorized} of client public keys "
                               "(copy each allowed client's NAME.key there)")
        self._allowed: set[bytes] = set()
        self._refusals = Throttle(log, self.LOG_REFUSAL_EVERY)
        self._auth: ThreadAuthenticator | None = None

    def start(self, context: zmq.Context) -> None:
        """Start the authenticator: from now on only the authorized keys get in."""
        self.reload()
        self._auth = ThreadAuthenticator(context, log=log.getChild("zap"))
        self._auth.start()
        self._auth.configure_curve_callback(domain="*", credentials_provider=self)

    def reload(self) -> None:
        """Re-read the authorized keys (after one was added or removed)."""
        self._allowed = set(zmq.auth.load_certificates(str(self.authorized)))
        self._refusals.forget()
        log.info("CurveZMQ: %d authorized client key(s) in %s", len(self._allowed),
                 self.authorized)

    def callback(self, domain: str, client_key: bytes) -> bool:
        """The authenticator asks, for every connection: is this client's key allowed?"""
        if client_key in self._allowed:
            return True
        self._refusals.warning("refused a client whose key %s is not in %s",
                               client_key.decode(), self.authorized, key=client_key)
        return False

    def apply(self, socket: zmq.Socket) -> None:
        socket.curve_secretkey = self.secret
        socket.curve_publickey = self.public
        socket.curve_server = True

    def stop(self) -> None:
        if self._auth is not None:
            self._auth.stop()
            self._auth = None


def is_local(endpoint: str) -> bool:
    """Whether *endpoint* stays on this host: ipc, inproc, or a loopback address."""
    if endpoint.startswith(("ipc://", "inproc://")):
        return True
    host = endpoint.split("://", 1)[-1].rsplit(":", 1)[0].strip("[]")
    return host.startswith("127.") or host in ("localhost", "::1")


def bind_servers(context: zmq.Context, endpoints: list[str], keys_dir: str | None, who: str,
                 prepare: Callable[[zmq.Socket], None]) -> tuple[list[zmq.Socket],
                                                               ServerKeys | None]:
    """ROUTER sockets bound at *endpoints*, for the broker or a relay (*who*).

    Loopback endpoints are served as they are; any other only with CurveZMQ, so
    without *keys_dir* this refuses to bind one. *prepare* sets a socket's options
    before it binds. On failure, closes whatever it opened and raises.
    """
    remote = [e for e in endpoints if not is_local(e)]
    if remote and keys_dir is None:
        raise KeyFileError(f"{', '.join(remote)} is beyond loopback: the {who} serves it only "
                           "with CurveZMQ; pass --curve-keys DIR (framebus keygen)")
    keys = ServerKeys(keys_dir) if keys_dir is not None else None
    sockets: list[zmq.Socket] = []
    try:
        if keys is not None:
            keys.start(context)
        for endpoint in endpoints:
            socket = context.socket(zmq.ROUTER)
            sockets.append(socket)
            socket.linger = 0
            prepare(socket)
            if keys is not None and not is_local(endpoint):
                keys.apply(socket)  # (without keys, no endpoint beyond loopback got here)
            try:
                socket.bind(endpoint)
            except zmq.ZMQError as exc:
                raise FramebusError(f"{who} cannot bind {endpoint}: {exc}") from None
    except BaseException:
        for socket in sockets:
            socket.close(linger=0)
        if keys is not None:
            keys.stop()
        raise
    return sockets, keys
