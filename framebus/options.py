"""Command-line options shared by `framebus` and the ready-to-run clients, and the options
of `framebus decode`, generated from the decode spec (framebus/spec.py)."""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Any, TypeVar

import click
from msgspec import inspect as mi

from . import config
from .spec import Field, Size, fields

broker_option = click.option(
    "--broker", envvar="FRAMEBUS_BROKER", default=config.DEFAULT_BROKER, show_default=True,
    help="Broker endpoint (also $FRAMEBUS_BROKER).")


class SizeType(click.ParamType):
    """WIDTHxHEIGHT on the command line, as a :class:`~framebus.spec.Size`."""

    name = "WIDTHxHEIGHT"

    def get_metavar(self, param: click.Parameter, ctx: click.Context | None = None) -> str:
        return self.name

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> Size:
        try:
            return Size.parse(value)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


SIZE = SizeType()

F = TypeVar("F", bound=Callable[..., Any])


def spec_options(arguments: Collection[str] = ("source",)) -> Callable[[F], F]:
    """Give a command one parameter for each field of the decode spec, in the spec's order:
    *arguments* positional, the others ``--options`` with the field's type, limits,
    default and help. The command receives them by field name, ready for
    ``DecodeSpec.convert``."""
    def decorate(command: F) -> F:
        for field in reversed(fields()):  # click lists them in the order they are applied
            command = _parameter(field, field.name in arguments)(command)
        return command
    return decorate


def _parameter(field: Field, argument: bool) -> Callable[[F], F]:
    if argument:
        return click.argument(field.name, type=_click_type(field), required=field.required)
    if field.flag:
        return click.option(field.option, field.name, is_flag=True, default=field.default,
                            help=field.help)
    return click.option(field.option, field.name, type=_click_type(field), default=field.default,
                        required=field.required, show_default=field.default is not None,
                        help=field.help)


def _click_type(field: Field) -> click.ParamType:
    kind = field.type
    if field.choices:
        return click.Choice(field.choices)
    if isinstance(kind, mi.CustomType) and kind.cls is Size:
        return SIZE
    if isinstance(kind, mi.IntType) and (kind.ge, kind.gt, kind.le, kind.lt) != (None,) * 4:
        return click.IntRange(_low(kind), _high(kind), kind.gt is not None, kind.lt is not None)
    if isinstance(kind, mi.FloatType) and (kind.ge, kind.gt, kind.le, kind.lt) != (None,) * 4:
        return click.FloatRange(_low(kind), _high(kind), kind.gt is not None,
                                kind.lt is not None)
    if isinstance(kind, mi.IntType):
        return click.INT
    if isinstance(kind, mi.FloatType):
        return click.FLOAT
    return click.STRING


def _low(kind: mi.IntType | mi.FloatType) -> Any:
    return kind.ge if kind.ge is not None else kind.gt


def _high(kind: mi.IntType | mi.FloatType) -> Any:
    return kind.le if kind.le is not None else kind.lt
