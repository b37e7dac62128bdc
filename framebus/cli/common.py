"""What the command modules share: the stderr console, the log, and failing in one line."""

from __future__ import annotations

import logging
import sys
from typing import NoReturn

import click
from rich.console import Console

log = logging.getLogger("framebus.cli")
err_console = Console(stderr=True)


def fail(exc: BaseException) -> NoReturn:
    """End the command with *exc*'s message as one line, exit status 1."""
    raise click.ClickException(str(exc)) from None


def stdout_console() -> Console:
    """A console for tables on stdout; piped output gets room for whole names: scripts
    grep it."""
    return Console(width=None if sys.stdout.isatty() else 250)
