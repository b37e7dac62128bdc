"""A site file: the broker, the relay and every stream that `framebus up` runs, in TOML.

::

    broker = "tcp://127.0.0.1:5555"    # optional: $FRAMEBUS_BROKER, else loopback

    # or, for a broker that also serves other hosts:
    # [broker]
    # address = "tcp://127.0.0.1:5555"   # what this site's processes use
    # bind = ["tcp://10.0.0.5:5555"]     # further endpoints the broker serves
    # curve_keys = "/etc/framebus/keys"  # needed for any endpoint beyond loopback
    # max_streams = 8192                 # the broker's caps (default 4096 streams, 256 relays)

    [relay]                            # optional: serve this host's streams to other hosts
    bind = ["tcp://127.0.0.1:5556", "tcp://10.0.0.5:5556"]
    advertise = "tcp://10.0.0.5:5556"
    curve_keys = "/etc/framebus/keys"
    # packet_buffer = 4096               # per packet stream, for remote recorders (default
    # packet_buffer_mib = 128            # 1024 packets, 32 MiB: about 40 s of 1080p25)

    [web]                              # optional: the console (`framebus web`)
    bind = "127.0.0.1:8080"
    # keys = "/etc/framebus/keys"      # web.token: needed to bind beyond loopback

    [defaults]                         # optional: every stream's options unless it says
    format = "bgr24"
    slots = 8

    [streams.cam1]
    source = "rtsp://10.0.0.21/stream1"
    size = "1280x720"
    fps = 10

    [streams.demo]
    source = "testsrc"

A stream's options are those of ``framebus decode``, both read through one
:class:`~framebus.spec.DecodeSpec`; [broker], [relay] and [web] say what
``framebus broker``, ``framebus relay`` and ``framebus web`` are run with. Every key is
checked: a typo is an error naming the table and the key, never silently ignored. An
endpoint beyond loopback without curve_keys (or the console's without keys) is refused
here, as the services themselves would refuse it, so a site that cannot run is never half
started.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib  # type: ignore[import-not-found]

from . import config
from .errors import InvalidName, SiteError, SpecError
from .keys import KeyFileError, ServerKeys, is_local
from .names import validate_stream_name
from .remote.packet_limits import MOST_MIB, MOST_PACKETS
from .spec import DecodeSpec

#: The relay's own default endpoint (framebus/remote/relay.py DEFAULT_BIND), when [relay]
#: has no bind: spelled out here so that the site file is read without loading the relay.
RELAY_DEFAULT_BIND = "tcp://127.0.0.1:5556"
#: `framebus web`'s default --bind, likewise.
WEB_DEFAULT_BIND = "127.0.0.1:8080"


@dataclass(frozen=True)
class BrokerSpec:
    """The site's broker: where the site's processes find it, and, should `framebus up`
    have to start it, what else it serves and with which keys."""

    address: str
    bind: tuple[str, ...] = ()
    curve_keys: str | None = None
    #: The broker's caps (`framebus broker --max-streams/--max-relays`); None: its defaults.
    max_streams: int | None = None
    max_relays: int | None = None

    def broker_args(self) -> list[str]:
        """The command line of `framebus broker` for a broker started for the site."""
        args = ["broker"]
        for endpoint in (self.address, *self.bind):
            args += ["--bind", endpoint]
        if self.curve_keys:
            args += ["--curve-keys", self.curve_keys]
        if self.max_streams is not None:
            args += ["--max-streams", str(self.max_streams)]
        if self.max_relays is not None:
            args += ["--max-relays", str(self.max_relays)]
        return args


@dataclass(frozen=True)
class RelaySpec:
    """The site's relay: what `framebus relay` is run with."""

    bind: tuple[str, ...] = (RELAY_DEFAULT_BIND,)
    advertise: str | None = None
    curve_keys: str | None = None
    #: `framebus relay --packet-buffer/--packet-buffer-mib`; None: its defaults.
    packet_buffer: int | None = None
    packet_buffer_mib: int | None = None

    def relay_args(self, broker: str) -> list[str]:
        """The command line of `framebus relay`, registering with the broker at *broker*."""
        args = ["relay"]
        for endpoint in self.bind:
            args += ["--bind", endpoint]
        if self.advertise:
            args += ["--advertise", self.advertise]
        if self.curve_keys:
            args += ["--curve-keys", self.curve_keys]
        if self.packet_buffer is not None:
            args += ["--packet-buffer", str(self.packet_buffer)]
        if self.packet_buffer_mib is not None:
            args += ["--packet-buffer-mib", str(self.packet_buffer_mib)]
        return [*args, "--broker", broker]


@dataclass(frozen=True)
class WebSpec:
    """The site's console: what `framebus web` is run with."""

    bind: str = WEB_DEFAULT_BIND
    keys: str | None = None

    def web_args(self, broker: str) -> list[str]:
        """The command line of `framebus web`, showing the broker at *broker*."""
        args = ["web", "--bind", self.bind]
        if self.keys:
            args += ["--keys", self.keys]
        return [*args, "--broker", broker]


@dataclass(frozen=True)
class Site:
    broker: BrokerSpec
    streams: dict[str, DecodeSpec]
    relay: RelaySpec | None = None
    web: WebSpec | None = None


__all__ = ["BrokerSpec", "DecodeSpec", "RelaySpec", "Site", "SiteError", "WebSpec", "load",
           "parse"]
_TCP = re.compile(r"tcp://(\[[0-9A-Fa-f:.]+\]|[^\s:/\[\]]+):(\d{1,5})")
_WILDCARD_HOSTS = ("*", "0.0.0.0", "[::]")
_HOST_PORT = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[^\s:/\[\]]+):(\d{1,5})")


def load(path: str | Path) -> Site:
    """Read and check a site file; SiteError says what is wrong and where."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except OSError as exc:
        raise SiteError(f"cannot read {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise SiteError(f"{path} is not valid TOML: {exc}") from None
    return parse(data, str(path), base=path.parent)


def parse(data: dict, where: str = "site file", base: Path | None = None) -> Site:
    """Check a site file's *data*; relative key directories are taken from *base*."""
    unknown = set(data) - {"broker", "relay", "web", "defaults", "streams"}
    if unknown:
        raise SiteError(f"{where}: unknown top-level key(s) {sorted(unknown)}; "
                        "expected broker, relay, web, defaults, streams")
    base = base or Path.cwd()
    broker = _broker(data.get("broker", config.broker_address()), where, base)
    relay = None
    if "relay" in data:
        relay = _relay(_table(data["relay"], f"{where}: [relay]"), f"{where}: [relay]", base)
        taken = {broker.address, *broker.bind} & set(relay.bind)
        if taken:
            raise SiteError(f"{where}: [relay]: bind: {', '.join(sorted(taken))} is the "
                            "broker's already; give the relay a port of its own")
    web = None if "web" not in data else \
        _web(_table(data["web"], f"{where}: [web]"), f"{where}: [web]", base)
    defaults = _table(data.get("defaults", {}), f"{where}: [defaults]")
    # Checked on their own, so that a bad default is blamed on [defaults]; a stand-in
    # source, since a default source is allowed but not needed.
    _spec({"source": "testsrc", **defaults}, f"{where}: [defaults]", "defaults")
    streams_table = _table(data.get("streams", {}), f"{where}: [streams]")
    if not streams_table:
        raise SiteError(f"{where}: no streams; add a [streams.NAME] table with a source")
    streams = {}
    for name, options in streams_table.items():
        context = f"{where}: [streams.{name}]"
        try:
            validate_stream_name(name)
        except InvalidName as exc:
            raise SiteError(f"{context}: {exc}") from None
        streams[name] = _spec({**defaults, **_table(options, context)}, context, name)
    return Site(broker, streams, relay, web)


def _broker(value: object, where: str, base: Path) -> BrokerSpec:
    """``broker = "ADDRESS"`` or a [broker] table."""
    if isinstance(value, str):
        return BrokerSpec(_address(value, f"{where}: broker"))
    if not isinstance(value, dict):
        raise SiteError(f"{where}: broker must be an address (broker = \"tcp://HOST:PORT\") "
                        f"or a [broker] table, got {value!r}")
    context = f"{where}: [broker]"
    _known(value, ("address", "bind", "curve_keys", "max_streams", "max_relays"), context)
    address = _address(value.get("address", config.broker_address()), f"{context}: address")
    bind = _endpoints(value, "bind", context)
    if address in bind:
        raise SiteError(f"{context}: bind: {address} is the address, which the broker "
                        "serves anyway; list only further endpoints")
    keys = _curve_keys(value, context, base)
    _needs_keys(bind, keys, context, "broker")
    return BrokerSpec(address, bind, keys, _cap(value, "max_streams", context),
                      _cap(value, "max_relays", context))


def _cap(table: dict, key: str, context: str, most: int | None = None) -> int | None:
    value = table.get(key)
    if value is not None and not (type(value) is int and 1 <= value <= (most or value)):
        within = f"from 1 to {most}" if most else ">= 1"
        raise SiteError(f"{context}: {key} = {value!r} is not valid; expected an integer "
                        f"{within}")
    return value


def _relay(table: dict, context: str, base: Path) -> RelaySpec:
    _known(table, ("bind", "advertise", "curve_keys", "packet_buffer", "packet_buffer_mib"),
           context)
    bind = _endpoints(table, "bind", context) or RelaySpec.bind
    advertise = table.get("advertise")
    if advertise is not None and not (isinstance(advertise, str) and _is_tcp(advertise)
                                      and not _wildcard(advertise)):
        raise SiteError(f"{context}: advertise = {advertise!r} is not valid; expected the "
                        "tcp://HOST:PORT other hosts reach the relay at")
    keys = _curve_keys(table, context, base)
    _needs_keys(bind, keys, context, "relay")
    # As the relay does: it tells other hosts its last endpoint beyond loopback, and
    # cannot when that one is a wildcard.
    remote = [e for e in bind if not is_local(e)]
    if remote and _wildcard(remote[-1]) and advertise is None:
        raise SiteError(f"{context}: bound to {remote[-1]}, the relay cannot tell other hosts "
                        "its address: set advertise = \"tcp://ADDRESS:PORT\"")
    return RelaySpec(bind, advertise, keys, _cap(table, "packet_buffer", context, MOST_PACKETS),
                     _cap(table, "packet_buffer_mib", context, MOST_MIB))


def _web(table: dict, context: str, base: Path) -> WebSpec:
    _known(table, ("bind", "keys"), context)
    bind = table.get("bind", WEB_DEFAULT_BIND)
    match = _HOST_PORT.fullmatch(bind) if isinstance(bind, str) else None
    if match is None or not 1 <= int(match.group(2)) <= 65535:
        raise SiteError(f"{context}: bind = {bind!r} is not valid; expected HOST:PORT, such "
                        f"as bind = \"{WEB_DEFAULT_BIND}\"")
    keys = table.get("keys")
    if keys is not None:
        if not isinstance(keys, str) or not keys.strip():
            raise SiteError(f"{context}: keys = {keys!r} is not valid; expected the path of "
                            "the site's key directory, with web.token")
        keys = str((base / Path(keys).expanduser()).resolve())
        try:  # checked now, as `framebus web` would: never a site half started
            from .web.auth import Credentials
        except ModuleNotFoundError as exc:
            raise SiteError(f"{context}: the console needs the web extra ({exc}): "
                            "pip install 'framebus[web]'") from None
        try:
            Credentials.from_dir(keys).ssl_context()
        except KeyFileError as exc:
            raise SiteError(f"{context}: keys: {exc}") from None
    elif not is_local(f"tcp://{bind}"):
        raise SiteError(f"{context}: bind: {bind} is beyond loopback, which the console serves "
                        "only with a login: set keys to a key directory with web.token "
                        "(framebus web --keys DIR --make-token)")
    return WebSpec(bind, keys)


def _known(table: dict, keys: tuple[str, ...], context: str) -> None:
    unknown = set(table) - set(keys)
    if unknown:
        raise SiteError(f"{context}: unknown key(s) {sorted(unknown)}; known: {', '.join(keys)}")


def _address(value: object, context: str) -> str:
    """The broker's address as the site's processes use it: tcp:// or ipc://."""
    if isinstance(value, str) and (_is_tcp(value) or
                                   (value.startswith("ipc://") and len(value) > 6)):
        return value
    raise SiteError(f"{context} = {value!r} is not valid; expected a tcp://HOST:PORT "
                    "(or ipc://PATH) address")


def _endpoints(table: dict, key: str, context: str) -> tuple[str, ...]:
    """A list of tcp://HOST:PORT endpoints to serve; () when *key* is absent."""
    if key not in table:
        return ()
    value = table[key]
    example = '["tcp://10.0.0.5:5556"]'
    if not isinstance(value, list) or not value:
        raise SiteError(f"{context}: {key} = {value!r} is not valid; expected a non-empty "
                        f"list of tcp://HOST:PORT endpoints, such as {key} = {example}")
    for endpoint in value:
        if not isinstance(endpoint, str) or not _is_tcp(endpoint):
            raise SiteError(f"{context}: {key}: {endpoint!r} is not valid; expected a "
                            "tcp://HOST:PORT endpoint (other hosts reach services over TCP)")
    if len(set(value)) != len(value):
        raise SiteError(f"{context}: {key} lists an endpoint twice: {value}")
    return tuple(value)


def _curve_keys(table: dict, context: str, base: Path) -> str | None:
    """The key directory, checked now: a service refuses to start without its keys."""
    value = table.get("curve_keys")
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise SiteError(f"{context}: curve_keys = {value!r} is not valid; expected the path "
                        "of a key directory (framebus keygen server --dir DIR)")
    directory = (base / Path(value).expanduser()).resolve()
    try:
        ServerKeys(directory)
    except KeyFileError as exc:
        raise SiteError(f"{context}: curve_keys: {exc}") from None
    return str(directory)


def _needs_keys(endpoints: tuple[str, ...], keys: str | None, context: str, who: str) -> None:
    remote = [e for e in endpoints if not is_local(e)]
    if remote and keys is None:
        raise SiteError(f"{context}: bind: {', '.join(remote)} is beyond loopback, which the "
                        f"{who} serves only with CurveZMQ: set curve_keys to a key directory "
                        "(framebus keygen server --dir DIR)")


def _is_tcp(endpoint: str) -> bool:
    match = _TCP.fullmatch(endpoint)
    return match is not None and 1 <= int(match.group(2)) <= 65535


def _wildcard(endpoint: str) -> bool:
    return endpoint[len("tcp://"):].rsplit(":", 1)[0] in _WILDCARD_HOSTS


def _table(value: object, context: str) -> dict:
    if not isinstance(value, dict):
        raise SiteError(f"{context} must be a table")
    return value


def _spec(options: dict, context: str, name: str) -> DecodeSpec:
    """Stream *name*'s options as a DecodeSpec; the name is the table's, not a key."""
    try:
        return DecodeSpec.convert(options, name=name)
    except (SpecError, InvalidName) as exc:
        raise SiteError(f"{context}: {exc}") from None
