"""The ``framebus`` command line, split by job.

=============  =========================================================
module         commands
=============  =========================================================
``services``   ``broker``, ``relay``, ``keygen``: the services and their keys
``tables``     ``ls``, ``stat``: what the broker knows, as tables
``site``       ``decode``, ``up``, ``testsrc``: producers, one or a whole site
``live``       ``demo``, ``watch``: a live consumer's view
``web``        ``web``: the console in the browser
``clients/``   ``view``, ``record``, ``snapshot``: the ready-to-run consumers
=============  =========================================================

Each command's module is imported only when the command runs (``lazy.LazyGroup``), so
``framebus --help`` and ``framebus ls`` load neither OpenCV nor PyAV.
"""

from __future__ import annotations

import logging
import signal
import sys

import click

from ..support.children import die_with_parent
from .common import err_console, log
from .lazy import LazyGroup

#: Every command: where it lives, and its short help for `framebus --help`.
COMMANDS = {
    "broker": ("framebus.cli.services:broker", "Run the discovery and liveness service."),
    "relay": ("framebus.cli.services:relay",
              "Serve this host's streams to subscribers on other hosts."),
    "keygen": ("framebus.cli.services:keygen",
               "Make a CurveZMQ key pair: NAME.key (public) and NAME.key_secret (owner-only)."),
    "ls": ("framebus.cli.tables:ls_",
           "List the streams the broker knows, on every host, and the relays serving them."),
    "stat": ("framebus.cli.tables:stat", "Live figures of every stream, or of NAMES: decode "
                                         "and publish rates, drops, errors."),
    "decode": ("framebus.cli.site:decode", "Decode SOURCE into stream NAME."),
    "up": ("framebus.cli.site:up", "Run a whole site: the broker, the relay and a decoder for "
                                   "every stream of SITE_FILE."),
    "testsrc": ("framebus.cli.site:testsrc", "Publish a moving test pattern (bgr24) as stream "
                                             "NAME."),
    "demo": ("framebus.cli.live:demo",
             "A broker, a test-pattern stream and a live consumer, all in one go."),
    "watch": ("framebus.cli.live:watch",
              "Subscribe to NAME and show live frame rate, latency and drops."),
    "web": ("framebus.cli.web:web",
            "Serve the console: every stream live in the browser, /api/streams, /metrics."),
    "view": ("framebus.clients.view:command", "Show stream NAME live in a window, or keep a "
                                              "snapshot file updated without a display."),
    "record": ("framebus.clients.record:command",
               "Record stream NAME to the video file OUT (MP4, or what its extension says)."),
    "snapshot": ("framebus.clients.snapshot:command",
                 "Write the newest frame of stream NAME to OUT (.png, .jpg, ...)."),
}


@click.group(cls=LazyGroup, lazy=COMMANDS,
             context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", count=True, help="More logging (-vv for debug).")
@click.version_option(package_name="framebus")
def main(verbose: int) -> None:
    """framebus: live video frames in shared memory, for every process that wants them."""
    _configure_logging(verbose)
    signal.signal(signal.SIGINT, _stop_on_signal)
    signal.signal(signal.SIGTERM, _stop_on_signal)
    die_with_parent()


def _configure_logging(verbose: int) -> None:
    if err_console.is_terminal:
        from rich.logging import RichHandler

        handler: logging.Handler = RichHandler(console=err_console, show_path=False)
        handler.setFormatter(logging.Formatter("%(name)s: %(message)s", datefmt="%H:%M:%S"))
    else:  # logs for files and pipes: one line a record, never wrapped
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter(
            "%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S"))
    logging.basicConfig(level=logging.DEBUG if verbose > 1 else logging.INFO, handlers=[handler])
    if not verbose:
        logging.getLogger("framebus").setLevel(logging.WARNING)
        log.setLevel(logging.INFO)
        # Services say what they do.
        for chatty in ("framebus.broker", "framebus.supervisor", "framebus.remote.relay"):
            logging.getLogger(chatty).setLevel(logging.INFO)


def _stop_on_signal(signum: int, _frame: object) -> None:
    """The first SIGINT or SIGTERM stops the command: Ctrl-C's KeyboardInterrupt, or exit
    status 0 for SIGTERM, unwinding so that every ``finally`` runs and rings are unlinked.

    Those that follow are ignored. A terminal's Ctrl-C reaches its whole foreground
    process group, and a parent stopping its child sends SIGTERM on top; a second signal
    arriving during the cleanup would cut it short and leave a ring behind. A parent
    that loses patience sends SIGKILL, and the broker reclaims what that leaves.

    Ignored by a handler that does nothing, not by SIG_IGN: a signal already delivered
    but not yet handled would find SIG_IGN and raise OSError ("ignored due to race
    condition") wherever the program then is.
    """
    signal.signal(signal.SIGINT, _stopping)
    signal.signal(signal.SIGTERM, _stopping)
    if signum == signal.SIGINT:
        raise KeyboardInterrupt
    sys.exit(0)


def _stopping(signum: int, _frame: object) -> None:
    """Already stopping: the signal is ignored (no logging here, where a lock may be held)."""
