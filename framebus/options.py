"""Command-line options shared by `framebus` and the ready-to-run clients."""

from __future__ import annotations

import click

from . import config

broker_option = click.option(
    "--broker", envvar="FRAMEBUS_BROKER", default=config.DEFAULT_BROKER, show_default=True,
    help="Broker endpoint (also $FRAMEBUS_BROKER).")
