"""The decode spec: what one decoder worker does, declared once.

A :class:`DecodeSpec` says which source to decode into which stream, and how: pixel
format, size, rate, ring slots, looping, RTSP transport, timeout, decoder threads. It
is the one place these options are written down, each with its type, its limits, its
default and its help text:

- ``framebus decode``'s options are generated from it (``framebus.options.spec_options``);
- a site file's ``[streams.NAME]`` tables are read through it (``framebus.sitefile``),
  strictly: an unknown key or a bad value is a :class:`~framebus.errors.SpecError`
  naming the key;
- ``framebus up`` turns it back into its children's command lines (:meth:`DecodeSpec.args`);
- the decoder worker takes it as it is (``DecodeWorker(spec)``).

The option names are the same everywhere: ``format`` is ``--format`` and the site file's
``format``, ``size`` is ``--size WxH`` and ``size = "WxH"``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal, get_args, get_origin

import msgspec
from msgspec import Meta
from msgspec import inspect as mi

from .errors import SpecError
from .names import validate_stream_name
from .pixfmt import Format

Transport = Literal["tcp", "udp"]
#: When pixels are decoded (packets are published whatever it says): every frame; only while
#: a pixel subscriber is connected, from the next key frame; key frames only.
DecodeMode = Literal["always", "demand", "keyframes"]


class Size:
    """A picture size, written ``WIDTHxHEIGHT`` ("1280x720") in site files and on the
    command line; unpacks as ``width, height = size``."""

    __slots__ = ("height", "width")
    EXAMPLE = "1280x720"

    def __init__(self, width: int, height: int) -> None:
        if not (type(width) is int and type(height) is int and width > 0 and height > 0):
            raise ValueError(f"a size is two positive integers, got {width!r} and {height!r}")
        self.width = width
        self.height = height

    @classmethod
    def parse(cls, text: object) -> Size:
        """``"1280x720"`` (or ``"1280X720"``) as a Size; ValueError says what was expected."""
        if isinstance(text, Size):
            return text
        if isinstance(text, str):
            match = re.fullmatch(r"\s*(\d+)[xX](\d+)\s*", text)
            if match and int(match[1]) > 0 and int(match[2]) > 0:
                return cls(int(match[1]), int(match[2]))
        raise ValueError(f"expected WIDTHxHEIGHT such as {cls.EXAMPLE}, got {text!r}")

    def __iter__(self) -> Iterator[int]:
        yield self.width
        yield self.height

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Size) and (self.width, self.height) == (other.width,
                                                                         other.height)

    def __hash__(self) -> int:
        return hash((self.width, self.height))

    def __repr__(self) -> str:
        return f"Size({self.width}, {self.height})"

    def __str__(self) -> str:
        return f"{self.width}x{self.height}"


class DecodeSpec(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Decode *source* into stream *name*. Build one from untrusted options (a site
    file's table, say) with :meth:`convert`, which checks every field."""

    source: Annotated[str, Meta(
        pattern=r"\S", description="a file, an rtsp://, http(s)://, tcp:// or udp:// URL, a "
                                   "V4L2 device (/dev/video0), or testsrc",
        extra={"expected": "a file, a URL, /dev/videoN or testsrc"})]
    name: Annotated[str, Meta(description="Stream name to publish as.",
                              extra={"expected": "a stream name"})]
    format: Annotated[Format, Meta(description="Pixel format in the ring.")] = "bgr24"
    size: Annotated[Size, Meta(
        description="Scale to WIDTHxHEIGHT (default: the source's size).")] | None = None
    fps: Annotated[float, Meta(
        gt=0, description="Publish at most this many frames a second "
                          "(default: every frame).")] | None = None
    slots: Annotated[int, Meta(ge=1, le=1024, description="Frames the ring holds.")] = 8
    loop: Annotated[bool, Meta(description="Files: start over at the end.")] = False
    fast: Annotated[bool, Meta(
        description="Files: decode as fast as possible, not at their timing.")] = False
    transport: Annotated[Transport, Meta(description="RTSP transport.")] = "tcp"
    timeout: Annotated[float, Meta(
        ge=0.1, description="Seconds to wait for a network source to connect or send.")] = 5.0
    threads: Annotated[int, Meta(
        ge=0, le=64, description="Decoder threads; 0: FFmpeg's choice (fastest for one "
                                 "stream), 1: least CPU a frame (for many streams on few "
                                 "cores).")] = 0
    decode: Annotated[DecodeMode, Meta(
        description="When to decode pixels: always; on demand (only while a pixel "
                    "subscriber is connected); key frames only.")] = "always"
    hwaccel: Annotated[str, Meta(
        pattern=r"^[a-z0-9_]{1,16}\Z", description="Hardware decoding: none, auto (a "
        "hardware decoder if this machine has one, else the CPU), or a device type such as "
        "cuda, vaapi, qsv.", extra={"expected": "none, auto or a device type"})] = "none"

    def __post_init__(self) -> None:
        validate_stream_name(self.name)

    @classmethod
    def convert(cls, options: Mapping[str, Any], **given: Any) -> DecodeSpec:
        """A spec from *options* (TOML-decoded, or a command line's), every field checked
        strictly: no bool for a number, no unknown key. Raises SpecError naming the key.

        Fields in *given* are the caller's to set (a site file's stream name is its
        table's): in *options* they are unknown keys.
        """
        known = [f.name for f in fields() if f.name not in given]
        unknown = sorted(set(options) - set(known))
        if unknown:
            raise SpecError(f"unknown option(s) {unknown}; known: {', '.join(known)}",
                            unknown[0])
        data = {**options, **given}
        try:
            return msgspec.convert(data, cls, dec_hook=_dec_hook)
        except msgspec.ValidationError as exc:
            raise _explain(exc, data) from None

    def args(self) -> list[str]:
        """The arguments of ``framebus decode`` that run this spec (no --broker): its
        source, --name, and every option that differs from its default."""
        args = ["decode", self.source, "--name", self.name]
        for f in fields():
            value = getattr(self, f.name)
            if f.name in ("source", "name") or value == f.default:
                continue
            args += [f.option] if f.flag else [f.option, str(value)]
        return args


@dataclass(frozen=True)
class Field:
    """One field of the spec, as a command line and an error message need it."""

    name: str
    type: mi.Type  # without None and without the metadata
    optional: bool  # None is allowed (and is the default)
    required: bool
    default: Any
    help: str
    choices: tuple[str, ...] | None  # a Literal's values, in their declared order
    expected: str  # for "key = value is not valid; expected ..."

    @property
    def option(self) -> str:
        """Its command-line option: ``--name``."""
        return "--" + self.name.replace("_", "-")

    @property
    def flag(self) -> bool:
        return isinstance(self.type, mi.BoolType)


def fields() -> list[Field]:
    """The spec's fields, in order, with their types, defaults, help and expectations."""
    return _FIELDS


def _field(info: mi.Field, annotation: object) -> Field:
    kind, optional = info.type, False
    if isinstance(info.type, mi.UnionType):
        rest = [t for t in info.type.types if not isinstance(t, mi.NoneType)]
        kind, optional = rest[0], len(rest) < len(info.type.types)
    help_text, expected = "", None
    if isinstance(kind, mi.Metadata):
        help_text = (kind.extra_json_schema or {}).get("description", "")
        expected = (kind.extra or {}).get("expected")
        kind = kind.type
    default = None if info.default is msgspec.NODEFAULT else info.default
    choices = _literal(annotation) if isinstance(kind, mi.LiteralType) else None
    return Field(info.name, kind, optional, info.required, default, help_text, choices,
                 expected or ("one of " + ", ".join(choices) if choices else _expectation(kind)))


def _literal(annotation: object) -> tuple[str, ...]:
    """The values of the Literal inside *annotation* (Annotated, or with None), in order."""
    while get_origin(annotation) is not Literal:
        annotation = next(a for a in get_args(annotation) if a is not type(None))
    return get_args(annotation)


def _expectation(kind: mi.Type) -> str:
    """What a value of *kind* looks like, for people."""
    if isinstance(kind, mi.BoolType):
        return "true or false"
    if isinstance(kind, mi.CustomType) and kind.cls is Size:
        return f"WIDTHxHEIGHT such as {Size.EXAMPLE}"
    if isinstance(kind, (mi.IntType, mi.FloatType)):
        what = "an integer" if isinstance(kind, mi.IntType) else "a number"
        low = kind.ge if kind.ge is not None else kind.gt
        high = kind.le if kind.le is not None else kind.lt
        if kind.ge is not None and kind.le is not None:
            return f"{what} from {kind.ge} to {kind.le}"
        bounds = [f"{'>=' if kind.ge is not None else '>'} {low}"] if low is not None else []
        bounds += [f"{'<=' if kind.le is not None else '<'} {high}"] if high is not None else []
        return " and ".join([f"{what} {bounds[0]}", *bounds[1:]]) if bounds else what
    if isinstance(kind, mi.StrType):
        return "a non-empty string" if kind.pattern or kind.min_length else "a string"
    return str(kind)


def _dec_hook(kind: type, value: object) -> object:
    if kind is Size:
        return Size.parse(value)  # its ValueError becomes the ValidationError's message
    raise NotImplementedError


_AT = re.compile(r"^(?P<problem>.*?)(?: - at `\$(?:\.(?P<key>\w+))?.*`)?$", re.DOTALL)
_NAMED = re.compile(r"Object (?:contains unknown|missing required) field `(?P<key>\w+)`")


def _explain(exc: msgspec.ValidationError, options: Mapping[str, Any]) -> SpecError:
    """msgspec's error, said in the spec's terms: the key, its value, what it should be."""
    match = _AT.match(str(exc))
    problem, key = (match["problem"], match["key"]) if match else (str(exc), None)
    by_name = {f.name: f for f in fields()}
    named = _NAMED.match(problem)
    if named and named["key"] not in options:
        key = named["key"]
        return SpecError(f"needs a {key} ({by_name[key].expected})", key)
    if key in by_name and key in options:
        return SpecError(f"{key} = {options[key]!r} is not valid; expected "
                         f"{by_name[key].expected}", key)
    return SpecError(problem, key)  # __post_init__'s: an invalid stream name


_FIELDS = [_field(info, f.type) for info, f in zip(
    mi.type_info(DecodeSpec).fields,  # type: ignore[attr-defined]
    msgspec.structs.fields(DecodeSpec))]
