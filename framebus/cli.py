"""The ``framebus`` command line."""

from __future__ import annotations

import json
import logging
import signal
import subprocess
import sys
import time
from contextlib import ExitStack
from fractions import Fraction

import click
from rich.console import Console
from rich.live import Live
from rich.logging import RichHandler
from rich.table import Table

from . import config, pixfmt
from .discovery import BrokerClient, broker_answers
from .errors import BrokerUnavailable, FramebusError, Timeout
from .meter import Meter
from .options import broker_option
from .protocol.broker import StreamInfo
from .supervisor import die_with_supervisor

log = logging.getLogger("framebus.cli")
err_console = Console(stderr=True)


def _size(ctx, param, value: str) -> tuple[int, int]:
    try:
        w, h = (int(n) for n in value.lower().split("x"))
        if w > 0 and h > 0:
            return w, h
    except ValueError:
        pass
    raise click.BadParameter(f"expected WIDTHxHEIGHT such as 1280x720, got {value!r}")



@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", count=True, help="More logging (-vv for debug).")
@click.version_option(package_name="framebus")
def main(verbose: int) -> None:
    """framebus: live video frames in shared memory, for every process that wants them."""
    if err_console.is_terminal:
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
    # SIGTERM unwinds like Ctrl-C, so every `finally` runs and rings are unlinked.
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    die_with_supervisor()


curve_keys_option = click.option(
    "--curve-keys", type=click.Path(file_okay=False), default=None,
    help="CurveZMQ key directory (server.key_secret, authorized/*.key); required to bind "
         "beyond loopback. Made with `framebus keygen`.")


def _exit_on_sigterm(*_) -> None:
    # Once: a second SIGTERM (the supervisor's, then the kernel's when it dies) must not
    # cut the cleanup short and leave a ring behind.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    sys.exit(0)


@main.command()
@click.option("--bind", "binds", multiple=True, envvar="FRAMEBUS_BROKER",
              default=[config.DEFAULT_BROKER], show_default=True,
              help="Where to listen (also $FRAMEBUS_BROKER); repeat for several endpoints.")
@curve_keys_option
def broker(binds: tuple[str, ...], curve_keys: str | None) -> None:
    """Run the discovery and liveness service."""
    from .broker import Broker

    _serve(lambda: Broker(list(binds), keys_dir=curve_keys))


@main.command()
@click.option("--bind", "binds", multiple=True, default=["tcp://127.0.0.1:5556"],
              show_default=True, help="Where to serve remote subscribers; repeat for several.")
@click.option("--advertise", default=None,
              help="The address other hosts reach this relay at (needed when bound to 0.0.0.0).")
@curve_keys_option
@broker_option
def relay(binds: tuple[str, ...], advertise: str | None, curve_keys: str | None,
          broker: str) -> None:
    """Serve this host's streams to subscribers on other hosts."""
    from .remote.relay import Relay

    _serve(lambda: Relay(list(binds), broker=broker, keys_dir=curve_keys, advertise=advertise))


def _serve(make_service) -> None:
    """Run a service until Ctrl-C or SIGTERM; a failure to start is one clear line.

    SIGHUP re-reads the authorized client keys, so a client can be admitted or
    turned away without a restart.
    """
    try:
        service = make_service()
    except FramebusError as exc:
        raise click.ClickException(str(exc)) from None
    signal.signal(signal.SIGHUP, lambda *_: service.reload_keys())
    try:
        service.run()
    except KeyboardInterrupt:
        pass
    finally:
        service.close()


@main.command()
@click.argument("name")
@click.option("--dir", "directory", type=click.Path(file_okay=False), default=".",
              show_default=True, help="Where to write NAME.key and NAME.key_secret.")
def keygen(name: str, directory: str) -> None:
    """Make a CurveZMQ key pair: NAME.key (public) and NAME.key_secret (owner-only).

    A server (broker or relay bound beyond loopback) uses server.key_secret from its
    --curve-keys DIR and admits the client keys in DIR/authorized/. A client sets
    $FRAMEBUS_KEYS to a directory holding client.key_secret and the server's server.key.
    """
    from .keys import generate

    try:
        public, secret = generate(name, directory)
    except FramebusError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"public key: {public}\nsecret key: {secret} (keep it on this machine)")


@main.command("ls")
@broker_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def ls_(broker: str, as_json: bool) -> None:
    """List the streams the broker knows, on every host, and the relays serving them."""
    try:
        with BrokerClient(broker, timeout=2.0) as client:
            infos = client.streams()
            relays = client.relays()
    except BrokerUnavailable as exc:
        raise click.ClickException(f"{exc} (start one with `framebus broker`)") from None
    except FramebusError as exc:  # AccessDenied, say
        raise click.ClickException(str(exc)) from None
    if as_json:
        rows = [dict(i.to_wire(), token=i.token.hex()) for i in infos]
        click.echo(json.dumps(rows, indent=2))
        return
    # Piped output gets room for whole names: scripts grep it.
    console = Console(width=None if sys.stdout.isatty() else 250)
    console.print(_streams_table(infos))
    for r in relays:
        console.print(f"relay for host {r['host']}: {r['endpoint']} "
                      f"({'alive' if r['alive'] else 'dead'}, pid {r['pid']})", highlight=False)


def _streams_table(infos: list[StreamInfo]) -> Table:
    table = Table(box=None, header_style="bold")
    for col in ("stream", "host", "geometry", "format", "fps", "subs", "producer", "last frame"):
        table.add_column(col, justify="right" if col in ("fps", "subs", "last frame") else "left")
    for i in infos:
        age = "-" if i.age is None else f"{i.age:.1f} s ago"
        alive = f"[green]alive[/] pid {i.pid}" if i.alive else f"[red]dead[/] pid {i.pid}"
        table.add_row(i.name, i.host, _geometry(i), i.fmt, f"{i.fps:.1f}", str(i.subscribers),
                      alive, age)
    if not infos:
        table.caption = "no streams"
    return table


@main.command()
@click.argument("names", nargs=-1)
@click.option("--once", is_flag=True, help="Print the figures once and exit.")
@click.option("--interval", type=click.FloatRange(min=0.2), default=1.0, show_default=True,
              help="Seconds between updates.")
@broker_option
def stat(names: tuple[str, ...], once: bool, interval: float, broker: str) -> None:
    """Live figures of every stream, or of NAMES: decode and publish rates, drops, errors."""
    with BrokerClient(broker, timeout=2.0) as client, ExitStack() as stack:
        live = None
        if err_console.is_terminal and not once:
            live = stack.enter_context(Live(console=err_console, refresh_per_second=4))
        try:
            while True:
                table = _stat_table(_streams_named(client, names))
                if live is not None:
                    live.update(table)
                else:
                    Console(width=None if sys.stdout.isatty() else 250).print(table)
                if once:
                    return
                time.sleep(interval)
        except KeyboardInterrupt:
            pass


def _streams_named(client: BrokerClient, names: tuple[str, ...]) -> list[StreamInfo]:
    try:
        infos = client.streams()
    except BrokerUnavailable as exc:
        raise click.ClickException(f"{exc} (start one with `framebus broker`)") from None
    if names:
        missing = set(names) - {i.name for i in infos}
        if missing:
            raise click.ClickException(f"no stream named {', '.join(sorted(missing))}")
        infos = [i for i in infos if i.name in names]
    return infos


STAT_COLUMNS = ("stream", "geometry", "format", "decode fps", "published fps", "subs",
                "dropped", "decode errors", "reconnects", "last frame", "producer")


def _stat_table(infos: list[StreamInfo]) -> Table:
    table = Table(box=None, header_style="bold")
    for col in STAT_COLUMNS:
        table.add_column(col, justify="left" if col in ("stream", "geometry", "format",
                                                        "producer") else "right")
    for i in infos:
        f = i.figures
        decode_fps = f"{f['decode_fps']:.1f}" if "decode_fps" in f else "-"
        age = "-" if i.age is None else f"{i.age:.1f} s ago"
        alive = f"[green]alive[/] pid {i.pid}" if i.alive else f"[red]dead[/] pid {i.pid}"
        table.add_row(i.name, _geometry(i), i.fmt, decode_fps, f"{i.fps:.1f}",
                      str(i.subscribers), str(f.get("dropped", "-")),
                      str(f.get("decode_errors", "-")), str(f.get("reconnects", "-")), age, alive)
    if not infos:
        table.caption = "no streams"
    return table


@main.command()
@click.argument("site_file", type=click.Path(dir_okay=False))
def up(site_file: str) -> None:
    """Run a whole site: the broker, the relay and a decoder for every stream of SITE_FILE.

    Restarts what dies, re-reads SITE_FILE on SIGHUP, and stops everything, leaving
    no ring behind, on Ctrl-C or SIGTERM. See examples/framebus.toml.
    """
    from .sitefile import SiteError
    from .supervisor import Supervisor

    display = _SiteDisplay()
    try:
        supervisor = Supervisor(site_file, on_tick=display.update)
    except SiteError as exc:
        raise click.ClickException(str(exc)) from None
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
        raise click.ClickException(str(exc)) from None
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

    def update(self, supervisor) -> None:
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
            table = _stat_table(infos or [])
            table.title = f"framebus up: {len(supervisor.streams)} stream(s)"
            if infos is None:
                table.caption = "the broker does not answer"
            table.caption = "\n".join(filter(None, [table.caption, *services]))
            self._live.update(table)
        else:
            for line in services:
                log.info("%s", line)
            for i in infos or []:
                log.info("%s: %s, %.1f fps, %d subs, %s dropped, %s decode errors, %s reconnects",
                         i.name, "alive" if i.alive else "dead", i.fps, i.subscribers,
                         i.figures.get("dropped", "-"), i.figures.get("decode_errors", "-"),
                         i.figures.get("reconnects", "-"))

    def __enter__(self):
        if self._live:
            self._live.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        if self._live:
            self._live.__exit__(*exc)
        if self._client:
            self._client.close()


def _services(supervisor, now: float) -> list[str]:
    """A line for the broker and one for the relay, when the site has one."""
    site = supervisor.site
    broker = supervisor.broker.status(now) if supervisor.broker else "already running, not up's"
    lines = [f"broker {site.broker.address}: {broker}"]
    if supervisor.relay is not None:
        lines.append(f"relay {', '.join(site.relay.bind)}: {supervisor.relay.status(now)}")
    return lines


def _geometry(info: StreamInfo) -> str:
    """WIDTHxHEIGHT of the picture, and xCHANNELS for packed formats."""
    if len(info.shape) < 2:
        return "x".join(map(str, info.shape))
    w, h = pixfmt.picture_size(info.fmt, info.shape)
    return f"{w}x{h}" + (f"x{info.shape[2]}" if len(info.shape) > 2 else "")


@main.command()
@click.argument("name")
@click.option("--size", default="640x480", show_default=True, callback=_size, help="WIDTHxHEIGHT.")
@click.option("--fps", default=30.0, show_default=True, help="Frames per second; 0 for flat out.")
@click.option("--slots", default=8, show_default=True, help="Frames the ring holds.")
@click.option("--frames", type=int, default=None, help="Stop after this many frames.")
@broker_option
def testsrc(name: str, size: tuple[int, int], fps: float, slots: int, frames: int | None,
            broker: str) -> None:
    """Publish a moving test pattern (bgr24) as stream NAME."""
    from . import testsrc as pattern
    from .publisher import Publisher

    w, h = size
    try:
        pub = Publisher(name, shape=(h, w, 3), fmt="bgr24", slots=slots, broker=broker,
                        time_base=1 / Fraction(fps).limit_denominator(1001) if fps > 0 else None)
    except (FramebusError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    log.info("publishing test pattern %s: %dx%d at %s fps", name, w, h, fps or "max")
    try:
        pattern.run(pub, fps, frames)
    except KeyboardInterrupt:
        pass
    finally:
        pub.close()


@main.command()
@click.argument("source")
@click.option("--name", required=True, help="Stream name to publish as.")
@click.option("--format", "fmt", type=click.Choice(["bgr24", "rgb24", "gray", "yuv420p"]),
              default="bgr24", show_default=True, help="Pixel format in the ring.")
@click.option("--size", default=None, callback=lambda c, p, v: v and _size(c, p, v),
              help="Scale to WIDTHxHEIGHT (default: the source's size).")
@click.option("--fps", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Publish at most this many frames a second (default: every frame).")
@click.option("--slots", default=8, show_default=True, help="Frames the ring holds.")
@click.option("--loop", is_flag=True, help="Files: start over at the end.")
@click.option("--fast", is_flag=True,
              help="Files: decode as fast as possible, not at their timing.")
@click.option("--transport", type=click.Choice(["tcp", "udp"]), default="tcp", show_default=True,
              help="RTSP transport.")
@click.option("--timeout", type=click.FloatRange(min=0.1), default=5.0, show_default=True,
              help="Seconds to wait for a network source to connect or send.")
@click.option("--threads", type=click.IntRange(min=0), default=0, show_default=True,
              help="Decoder threads; 0: FFmpeg's choice (fastest for one stream), "
                   "1: least CPU a frame (for many streams on few cores).")
@broker_option
def decode(source: str, name: str, fmt: str, size: tuple[int, int] | None, fps: float | None,
           slots: int, loop: bool, fast: bool, transport: str, timeout: float, threads: int,
           broker: str) -> None:
    """Decode SOURCE into stream NAME.

    SOURCE is a file, an rtsp://, http(s)://, tcp:// or udp:// URL, a V4L2 device
    (/dev/video0), or `testsrc`, a built-in moving test pattern. Live sources are
    reconnected with backoff for as long as this runs.
    """
    from .decoder import DecodeOptions, DecodeWorker, Source, SourceError
    from .names import validate_stream_name

    try:
        options = DecodeOptions(name=validate_stream_name(name), fmt=fmt, size=size, fps=fps,
                                slots=slots, loop=loop, fast=fast, rtsp_transport=transport,
                                timeout=timeout, threads=threads, broker=broker)
        worker = DecodeWorker(Source.parse(source), options)
        status = worker.run()
    except KeyboardInterrupt:
        status = 0
    except (SourceError, FramebusError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    sys.exit(status)


@main.command()
@click.argument("name")
@click.option("--duration", type=float, default=None, help="Stop after this many seconds.")
@click.option("--mode", type=click.Choice(["latest", "all"]), default="latest", show_default=True)
@broker_option
def watch(name: str, duration: float | None, mode: str, broker: str) -> None:
    """Subscribe to NAME and show live frame rate, latency and drops."""
    try:
        _watch(name, duration, mode, broker)
    except KeyboardInterrupt:
        pass


def _watch(name: str, duration: float | None, mode: str, broker: str) -> None:
    from .subscriber import Subscriber

    meter = Meter()
    end = None if duration is None else time.monotonic() + duration
    with Subscriber(name, broker=broker, mode=mode) as sub, ExitStack() as stack:
        live = None
        if err_console.is_terminal:
            live = stack.enter_context(Live(console=err_console, refresh_per_second=4))
        next_line = time.monotonic() + 1.0
        while end is None or time.monotonic() < end:
            try:
                frame = sub.recv(timeout=0.25)
                meter.add(frame.age)
            except Timeout:
                pass
            if live is not None:
                live.update(_watch_table(sub, meter))
            elif time.monotonic() >= next_line:
                next_line += 1.0
                log.info(_watch_line(sub, meter))
        log.info("%s: %d frames received, %d dropped, %d rejected", name, sub.received,
                 sub.dropped, sub.rejected)


def _fmt_ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f} ms"


def _watch_table(sub, meter: Meter) -> Table:
    table = Table(title=f"framebus watch {sub.name}", box=None, header_style="bold")
    for col in ("received", "fps", "latency p50", "latency p99", "dropped", "shape"):
        table.add_column(col, justify="right")
    shape = "-" if sub.info is None else "x".join(map(str, sub.info.shape))
    table.add_row(str(sub.received), f"{meter.fps:.1f}", _fmt_ms(meter.latency_ms(50)),
                  _fmt_ms(meter.latency_ms(99)), str(sub.dropped), shape)
    if not sub.connected:
        table.caption = "waiting for the stream to appear..."
    return table


def _watch_line(sub, meter: Meter) -> str:
    if not sub.received:
        return f"{sub.name}: waiting for frames..."
    return (f"{sub.name}: {sub.received} frames, {meter.fps:.1f} fps, latency p50 "
            f"{_fmt_ms(meter.latency_ms(50))} p99 {_fmt_ms(meter.latency_ms(99))}, "
            f"{sub.dropped} dropped")


@main.command()
@click.option("--name", default="demo", show_default=True, help="Stream name.")
@click.option("--size", default="1280x720", show_default=True, callback=_size)
@click.option("--fps", default=30.0, show_default=True)
@click.option("--duration", type=float, default=None, help="Stop after this many seconds.")
@broker_option
def demo(name: str, size: tuple[int, int], fps: float, duration: float | None, broker: str) -> None:
    """A broker, a test-pattern stream and a live consumer, all in one go."""
    children: list[subprocess.Popen] = []
    try:
        if not broker_answers(broker, timeout=0.5):
            children.append(_spawn("broker", "--bind", broker))
        w, h = size
        # The demo's producer is a real decoder worker, fed by the built-in test pattern.
        children.append(_spawn("decode", "testsrc", "--name", name, "--size", f"{w}x{h}",
                               "--fps", str(fps), "--broker", broker))
        log.info("demo: stream %r at %dx%d, %s fps; in another shell try `framebus ls` "
                 "or `python examples/opencv_client.py`; Ctrl-C stops", name, w, h, fps)
        _watch(name, duration, "latest", broker)
    except KeyboardInterrupt:
        pass
    finally:
        for child in reversed(children):
            _stop(child)


def _add_clients() -> None:
    """The ready-to-run consumers of clients/, as subcommands."""
    from .clients import record, snapshot, view

    for module in (view, record, snapshot):
        main.add_command(module.command, module.__name__.rsplit(".", 1)[1])


_add_clients()


def _spawn(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "framebus", *args])


def _stop(child: subprocess.Popen) -> None:
    child.terminate()
    try:
        child.wait(timeout=5)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()
