"""`framebus decode`, `framebus up` and `framebus testsrc`: producers, one or a whole site."""

from __future__ import annotations

import sys
import time
from fractions import Fraction
from types import TracebackType
from typing import Any

import click
from rich.live import Live

from ..discovery import BrokerClient
from ..errors import FramebusError, SiteError
from ..options import SIZE, broker_option, spec_options
from ..spec import DecodeSpec, Size
from .common import err_console, fail, log
from .tables import stat_table


@click.command()
@spec_options(arguments=("source",))
@broker_option
def decode(broker: str, **options: Any) -> None:
    """Decode SOURCE into stream NAME.

    SOURCE is a file, an rtsp://, http(s)://, tcp:// or udp:// URL, a V4L2 device
    (/dev/video0), or `testsrc`, a built-in moving test pattern. Live sources are
    reconnected with backoff for as long as this runs.
    """
    from ..decoder import DecodeWorker

    try:
        worker = DecodeWorker(DecodeSpec.convert(options), broker=broker)
        status = worker.run()
    except KeyboardInterrupt:
        status = 0
    except (FramebusError, ValueError) as exc:
        fail(exc)
    sys.exit(status)


@click.command()
@click.argument("site_file", type=click.Path(dir_okay=False))
def up(site_file: str) -> None:
    """Run a whole site: the broker, the relay and a decoder for every stream of SITE_FILE.

    Restarts what dies, re-reads SITE_FILE on SIGHUP, and stops everything, leaving
    no ring behind, on Ctrl-C or SIGTERM. See examples/framebus.toml.
    """
    from ..supervisor import Supervisor

    display = _SiteDisplay()
    try:
        supervisor = Supervisor(site_file, on_tick=display.update)
    except SiteError as exc:
        fail(exc)
    site = supervisor.site
    relay = f", relay on {', '.join(site.relay.bind)}" if site.relay else ""
    log.info("up: %d stream(s) from %s, broker %s%s; Ctrl-C stops everything",
             len(site.streams), site_file, site.broker.address, relay)
    try:
        with display:
            supervisor.run()
    except KeyboardInterrupt:
        pass
    except SiteError as exc:  # the broker would not start
        fail(exc)
    finally:
        log.info("up: everything stopped")


class _SiteDisplay:
    """What `framebus up` shows: a live table on a terminal, elsewhere a log line a stream
    every 10 s; either way, the state of the broker and relay it runs."""

    def __init__(self) -> None:
        self._live = Live(console=err_console, refresh_per_second=2) if err_console.is_terminal \
            else None
        self._next = 0.0
        self._client: BrokerClient | None = None

    def update(self, supervisor: Any) -> None:
        now = time.monotonic()
        if now < self._next:
            return
        self._next = now + (1.0 if self._live else 10.0)
        services = _services(supervisor, now)
        if self._client is None:
            self._client = BrokerClient(supervisor.site.broker.address, timeout=0.3)
        try:
            infos = self._client.streams()
        except FramebusError:  # the broker is down: what up knows of its children still shows
            infos = None
        if self._live:
            table = stat_table(infos or [])
            table.title = f"framebus up: {len(supervisor.streams)} stream(s)"
            state = "the broker does not answer" if infos is None else \
                None if infos else "no streams"
            table.caption = "\n".join(filter(None, [state, *services]))
            self._live.update(table)
        else:
            for line in services:
                log.info("%s", line)
            for i in infos or []:
                log.info("%s: %s, %.1f fps, %d subs, %s dropped, %s decode errors, %s reconnects",
                         i.name, "alive" if i.alive else "dead", i.fps, i.subscribers,
                         i.figures.get("dropped", "-"), i.figures.get("decode_errors", "-"),
                         i.figures.get("reconnects", "-"))

    def __enter__(self) -> _SiteDisplay:
        if self._live:
            self._live.__enter__()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        if self._live:
            self._live.__exit__(kind, exc, traceback)
        if self._client:
            self._client.close()


def _services(supervisor: Any, now: float) -> list[str]:
    """A line for the broker, and one for the relay and the console when the site has them."""
    site = supervisor.site
    broker = supervisor.broker.status(now) if supervisor.broker else "already running, not up's"
    lines = [f"broker {site.broker.address}: {broker}"]
    if supervisor.relay is not None:
        lines.append(f"relay {', '.join(site.relay.bind)}: {supervisor.relay.status(now)}")
    if supervisor.web is not None:
        lines.append(f"web {site.web.bind}: {supervisor.web.status(now)}")
    return lines


@click.command()
@click.argument("name")
@click.option("--size", type=SIZE, default="640x480", show_default=True, help="WIDTHxHEIGHT.")
@click.option("--fps", default=30.0, show_default=True, help="Frames per second; 0 for flat out.")
@click.option("--slots", default=8, show_default=True, help="Frames the ring holds.")
@click.option("--frames", type=int, default=None, help="Stop after this many frames.")
@broker_option
def testsrc(name: str, size: Size, fps: float, slots: int, frames: int | None,
            broker: str) -> None:
    """Publish a moving test pattern (bgr24) as stream NAME."""
    from .. import testsrc as pattern
    from ..publisher import Publisher

    w, h = size
    try:
        pub = Publisher(name, shape=(h, w, 3), fmt="bgr24", slots=slots, broker=broker,
                        time_base=1 / Fraction(fps).limit_denominator(1001) if fps > 0 else None)
    except (FramebusError, ValueError) as exc:
        fail(exc)
    log.info("publishing test pattern %s: %dx%d at %s fps", name, w, h, fps or "max")
    try:
        pattern.run(pub, fps, frames)
    except KeyboardInterrupt:
        pass
    finally:
        pub.close()
