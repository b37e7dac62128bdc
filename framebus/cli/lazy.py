"""A click group whose commands are imported only when one of them runs.

Each command is named by where it lives (``"framebus.cli.tables:ls"``) and by its short
help, so that ``framebus --help`` lists every command without importing any: a client
command's module loads OpenCV or PyAV, which neither ``--help`` nor ``framebus ls``
should pay for. tests/test_cli.py checks that the short help given here is the
command's own.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping

import click


class LazyGroup(click.Group):
    """A group of *lazy* commands: name -> ("module:attribute", short help)."""

    def __init__(self, *args: object, lazy: Mapping[str, tuple[str, str]],
                 **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.lazy = dict(lazy)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.lazy and cmd_name not in self.commands:
            self.add_command(self.load(cmd_name), cmd_name)
        return super().get_command(ctx, cmd_name)

    def load(self, name: str) -> click.Command:
        """Import command *name*'s module and return the command."""
        where = self.lazy[name][0]
        module, attribute = where.split(":")
        command = getattr(importlib.import_module(module), attribute)
        if not isinstance(command, click.Command):
            raise TypeError(f"{where} is not a click command")
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The command list of --help, from the short helps given: nothing is imported."""
        rows = []
        for name in self.list_commands(ctx):
            if name in self.commands or name not in self.lazy:
                command = self.get_command(ctx, name)
                if command is None or command.hidden:
                    continue
                rows.append((name, command.get_short_help_str(limit=1000)))
            else:
                rows.append((name, self.lazy[name][1]))
        if rows:
            limit = formatter.width - 6 - max(len(name) for name, _ in rows)
            with formatter.section("Commands"):
                formatter.write_dl([(name, click.Command(name, help=text).get_short_help_str(
                    limit)) for name, text in rows])
