"""`framebus ls` and `framebus stat`: what the broker knows, as tables."""

from __future__ import annotations

import json
import time
from contextlib import ExitStack

import click
from rich.live import Live
from rich.table import Table

from .. import pixfmt
from ..discovery import BrokerClient
from ..errors import BrokerUnavailable, FramebusError
from ..options import broker_option
from ..protocol.broker import StreamInfo
from .common import err_console, fail, stdout_console


@click.command("ls")
@broker_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def ls_(broker: str, as_json: bool) -> None:
    """List the streams the broker knows, on every host, and the relays serving them."""
    try:
        with BrokerClient(broker, timeout=2.0) as client:
            # page by page: a site of any size fits
            infos, relays = client.listing(kind="all")
    except BrokerUnavailable as exc:
        raise click.ClickException(f"{exc} (start one with `framebus broker`)") from None
    except FramebusError as exc:  # AccessDenied, say
        fail(exc)
    if as_json:
        rows = [dict(i.to_wire(), token=i.token.hex()) for i in infos]
        click.echo(json.dumps(rows, indent=2))
        return
    console = stdout_console()
    console.print(_streams_table(infos))
    for r in relays:
        console.print(f"relay for host {r.host}: {r.endpoint} "
                      f"({'alive' if r.alive else 'dead'}, pid {r.pid})", highlight=False)


def _streams_table(infos: list[StreamInfo]) -> Table:
    table = Table(box=None, header_style="bold")
    right = ("fps", "subs", "last frame", *PACKET_COLUMNS)
    for col in ("stream", "host", "geometry", "format", "fps", "subs", "producer", "last frame",
                *PACKET_COLUMNS):
        table.add_column(col, justify="right" if col in right else "left")
    for i in _frames_first(infos):
        table.add_row(i.name + (" (packets)" if i.kind == "packets" else ""), i.host,
                      geometry(i), i.fmt, f"{i.fps:.1f}", str(i.subscribers), _producer(i),
                      _age(i), *_packet_cells(i, infos))
    if not infos:
        table.caption = "no streams"
    return table


@click.command()
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
                table = stat_table(_streams_named(client, names))
                if live is not None:
                    live.update(table)
                else:
                    stdout_console().print(table)
                if once:
                    return
                time.sleep(interval)
        except KeyboardInterrupt:
            pass


def _streams_named(client: BrokerClient, names: tuple[str, ...]) -> list[StreamInfo]:
    try:
        infos = client.streams(kind="all")
    except BrokerUnavailable as exc:
        raise click.ClickException(f"{exc} (start one with `framebus broker`)") from None
    if names:
        missing = set(names) - {i.name for i in infos}
        if missing:
            raise click.ClickException(f"no stream named {', '.join(sorted(missing))}")
        infos = [i for i in infos if i.name in names]
    return infos


#: A pixel stream's decode mode, and its packet stream's figures (from the packet stream of
#: the same name, or the packet stream's own row when it has no pixels).
PACKET_COLUMNS = ("decode", "pkt/s", "bitrate", "keyint")
STAT_COLUMNS = ("stream", "geometry", "format", "decode fps", "published fps", "subs",
                "dropped", "decode errors", "reconnects", "last frame", "producer",
                *PACKET_COLUMNS)
DECODE_MODES = ("always", "demand", "keyframes")


def _frames_first(infos: list[StreamInfo]) -> list[StreamInfo]:
    """Each pixel stream (its packets in its row), then packet streams with no pixels."""
    frames = {i.name for i in infos if i.kind == "frames"}
    return [i for i in infos if i.kind == "frames" or i.name not in frames]


def _packet_cells(info: StreamInfo, infos: list[StreamInfo]) -> tuple[str, ...]:
    mode = info.figures.get("decode_mode")
    decode = "-"
    if isinstance(mode, int) and 0 <= mode < len(DECODE_MODES):
        decode = DECODE_MODES[mode]
        if info.figures.get("decoding") == 0:
            decode += " (idle)"
    packets = info if info.kind == "packets" else next(
        (i for i in infos if i.kind == "packets" and i.name == info.name), None)
    if packets is None:
        return decode, "-", "-", "-"
    f = packets.figures
    bitrate = f.get("bitrate")
    keyint = f.get("keyint")
    return (decode, f"{packets.fps:.1f}",
            "-" if bitrate is None else f"{bitrate / 1e6:.2f} Mb/s",
            "-" if not keyint else f"{keyint:.2f} s")


def stat_table(infos: list[StreamInfo]) -> Table:
    """The figures of *infos*, a row a stream (`framebus stat`, and `framebus up`'s display)."""
    table = Table(box=None, header_style="bold")
    for col in STAT_COLUMNS:
        table.add_column(col, justify="left" if col in ("stream", "geometry", "format",
                                                        "producer") else "right")
    rows = _frames_first(infos)
    for i in rows:
        f = i.figures
        decode_fps = f"{f['decode_fps']:.1f}" if "decode_fps" in f else "-"
        table.add_row(i.name + (" (packets)" if i.kind == "packets" else ""), geometry(i),
                      i.fmt, decode_fps, f"{i.fps:.1f}",
                      str(i.subscribers), str(f.get("dropped", "-")),
                      str(f.get("decode_errors", "-")), str(f.get("reconnects", "-")), _age(i),
                      _producer(i), *_packet_cells(i, infos))
    if not infos:
        table.caption = "no streams"
    return table


def _age(info: StreamInfo) -> str:
    return "-" if info.age is None else f"{info.age:.1f} s ago"


def _producer(info: StreamInfo) -> str:
    return f"[green]alive[/] pid {info.pid}" if info.alive else f"[red]dead[/] pid {info.pid}"


def geometry(info: StreamInfo) -> str:
    """WIDTHxHEIGHT of the picture, and xCHANNELS for packed formats."""
    if info.kind == "packets" and len(info.shape) == 2:
        return f"{info.shape[1]}x{info.shape[0]}"
    if len(info.shape) < 2:
        return "x".join(map(str, info.shape))
    w, h = pixfmt.picture_size(info.fmt, info.shape)
    return f"{w}x{h}" + (f"x{info.shape[2]}" if len(info.shape) > 2 else "")
