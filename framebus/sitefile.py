"""A site file: the broker and every stream that `framebus up` runs, in TOML.

::

    broker = "tcp://127.0.0.1:5555"    # optional: $FRAMEBUS_BROKER, else loopback

    [defaults]                         # optional: every stream's options unless it says
    format = "bgr24"
    slots = 8

    [streams.cam1]
    source = "rtsp://10.0.0.21/stream1"
    size = "1280x720"
    fps = 10

    [streams.demo]
    source = "testsrc"

A stream's options are those of ``framebus decode``. Every key is checked: a typo
is an error naming the stream and the key, never silently ignored.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, fields
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from . import config, pixfmt
from .errors import FramebusError, InvalidName
from .names import validate_stream_name


class SiteError(FramebusError, ValueError):
    """A site file that cannot be read or says something framebus does not accept."""


@dataclass(frozen=True)
class StreamSpec:
    """One stream of the site: what `framebus decode` is run with."""

    name: str
    source: str
    format: str = "bgr24"
    size: str | None = None
    fps: float | None = None
    slots: int = 8
    loop: bool = False
    fast: bool = False
    transport: str = "tcp"
    timeout: float = 5.0
    threads: int = 0

    def decode_args(self) -> list[str]:
        """The command line of `framebus decode` for this stream (broker excluded)."""
        args = ["decode", self.source, "--name", self.name, "--format", self.format,
                "--slots", str(self.slots), "--transport", self.transport,
                "--timeout", str(self.timeout), "--threads", str(self.threads)]
        if self.size:
            args += ["--size", self.size]
        if self.fps:
            args += ["--fps", str(self.fps)]
        args += ["--loop"] * self.loop + ["--fast"] * self.fast
        return args


@dataclass(frozen=True)
class Site:
    broker: str
    streams: dict[str, StreamSpec]


_OPTIONS = {f.name for f in fields(StreamSpec)} - {"name"}


def load(path: str | Path) -> Site:
    """Read and check a site file; SiteError says what is wrong and where."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except OSError as exc:
        raise SiteError(f"cannot read {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise SiteError(f"{path} is not valid TOML: {exc}") from None
    return parse(data, str(path))


def parse(data: dict, where: str = "site file") -> Site:
    unknown = set(data) - {"broker", "defaults", "streams"}
    if unknown:
        raise SiteError(f"{where}: unknown top-level key(s) {sorted(unknown)}; "
                        "expected broker, defaults, streams")
    broker = data.get("broker", config.broker_address())
    if not isinstance(broker, str) or not broker.startswith(("tcp://", "ipc://")):
        raise SiteError(f"{where}: broker must be a tcp:// or ipc:// address, got {broker!r}")
    defaults = _table(data.get("defaults", {}), f"{where}: [defaults]")
    _check_options(defaults, f"{where}: [defaults]", require_source=False)
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
        merged = {**defaults, **_table(options, context)}
        _check_options(merged, context, require_source=True)
        streams[name] = StreamSpec(name=name, **merged)
    return Site(broker, streams)


def _table(value: object, context: str) -> dict:
    if not isinstance(value, dict):
        raise SiteError(f"{context} must be a table")
    return value


def _check_options(options: dict, context: str, require_source: bool) -> None:
    unknown = set(options) - _OPTIONS
    if unknown:
        raise SiteError(f"{context}: unknown option(s) {sorted(unknown)}; "
                        f"known: {', '.join(sorted(_OPTIONS))}")
    if require_source and not isinstance(options.get("source"), str):
        raise SiteError(f"{context}: needs a source (a file, URL, /dev/videoN or testsrc)")
    checks = {
        "source": lambda v: isinstance(v, str) and v.strip() != "",
        "format": lambda v: v in pixfmt.FORMATS,
        "size": lambda v: isinstance(v, str) and _is_size(v),
        "fps": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0,
        "slots": lambda v: type(v) is int and 1 <= v <= 1024,
        "loop": lambda v: isinstance(v, bool),
        "fast": lambda v: isinstance(v, bool),
        "transport": lambda v: v in ("tcp", "udp"),
        "timeout": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0,
        "threads": lambda v: type(v) is int and 0 <= v <= 64,
    }
    hints = {"format": f"one of {', '.join(pixfmt.FORMATS)}", "size": "WIDTHxHEIGHT",
             "slots": "an integer from 1 to 1024", "transport": "tcp or udp",
             "fps": "a positive number", "timeout": "a positive number of seconds",
             "loop": "true or false", "fast": "true or false", "source": "a non-empty string",
             "threads": "an integer from 0 (FFmpeg's choice) to 64"}
    for key, value in options.items():
        if not checks[key](value):
            raise SiteError(f"{context}: {key} = {value!r} is not valid; expected {hints[key]}")


def _is_size(text: str) -> bool:
    parts = text.lower().split("x")
    return len(parts) == 2 and all(p.isdigit() and int(p) > 0 for p in parts)
