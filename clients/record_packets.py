"""framebus record in packet mode: the stream's compressed packets copied into files
(framebus.record), no decoding, no encoding."""

from __future__ import annotations

import time
from pathlib import Path

import click

from framebus.packets import PacketSubscriber
from framebus.record import Remuxer, SegmentFile
from framebus.record.live import parse_period, record_packets
from framebus.record.template import UnsupportedCodec


def check_pattern(pattern: str) -> None:
    """Fail now on a bad strftime pattern or a place that cannot be written."""
    try:
        path = Path(time.strftime(pattern))
    except ValueError as exc:
        raise click.ClickException(f"bad file pattern {pattern!r}: {exc}") from None
    if path.suffix.lower() not in (".mp4", ".mov", ".mkv"):
        raise click.ClickException(f"{pattern}: packets are recorded into .mp4 or .mkv files")
    probe = path.with_name(f".{path.name}.probe")
    try:
        probe.open("wb").close()
        probe.unlink()
    except OSError as exc:
        raise click.ClickException(f"cannot write {path}: {exc.strerror}") from None


def run(name: str, pattern: str, duration: float | None, segment: str | None,
        pre: str | None, broker: str | None) -> None:
    try:
        period = parse_period(segment) if segment else None
        preroll = parse_period(pre) if pre else 0.0
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    check_pattern(pattern)

    def said(f: SegmentFile, reason: str) -> None:
        c = f.codec
        click.echo(f"recording {name} from packets (no re-encoding) to {f.path}: {reason}, "
                   f"{c.name} {c.width}x{c.height}", err=True)

    from framebus.clients.record import StopRequest

    remuxer = Remuxer(pattern, period, on_file=said)
    reason = "aborted"
    with StopRequest() as stop:
        try:
            with PacketSubscriber(name, broker=broker, preroll=preroll) as sub:
                click.echo(f"{name}: packet mode (copying packets, no decoding)", err=True)
                reason = record_packets(sub, remuxer, lambda: stop.signal and
                                        f"stopped by {stop.signal}", duration)
        except UnsupportedCodec as exc:
            raise click.ClickException(str(exc)) from None
        finally:
            remuxer.close()
            for f in remuxer.files:
                click.echo(f"{f.path}: {f.packets} packets, {f.bytes} bytes", err=True)
            click.echo(f"{reason}: {remuxer.packets} packets in {len(remuxer.files)} file(s)",
                       err=True)
    if not remuxer.packets:
        raise click.ClickException(f"no packet of {name!r} was recorded")
