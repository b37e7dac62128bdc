"""framebus record in packet mode: the stream's compressed packets copied into files
(framebus.record), no decoding, no encoding."""

from __future__ import annotations

import time
from pathlib import Path

import click

from framebus.packets import PacketSubscriber
from framebus.record import Remuxer, SegmentFile
from framebus.record.live import parse_period, record_packets
from framebus.record.many import STREAM, Recordings, check_names
from framebus.record.template import UnsupportedCodec


def check_pattern(pattern: str, make_dirs: bool = False) -> None:
    """Fail now on a bad strftime pattern or a place that cannot be written (with
    *make_dirs*, a place whose directories can be made)."""
    try:
        path = Path(time.strftime(pattern))
    except ValueError as exc:
        raise click.ClickException(f"bad file pattern {pattern!r}: {exc}") from None
    if path.suffix.lower() not in (".mp4", ".mov", ".mkv"):
        raise click.ClickException(f"{pattern}: packets are recorded into .mp4 or .mkv files")
    probe = path.with_name(f".{path.name}.probe")
    try:
        made = _missing_dirs(path.parent) if make_dirs else []
        if made:
            path.parent.mkdir(parents=True)
        probe.open("wb").close()
        probe.unlink()
        for d in made:  # made to find out: gone again
            d.rmdir()
    except OSError as exc:
        raise click.ClickException(f"cannot write {path}: {exc.strerror}") from None


def _missing_dirs(directory: Path) -> list[Path]:
    """The directories of *directory* that do not exist yet, deepest first."""
    missing = []
    while not directory.exists() and directory != directory.parent:
        missing.append(directory)
        directory = directory.parent
    return missing


def periods(segment: str | None, pre: str | None) -> tuple[float | None, float]:
    try:
        return (parse_period(segment) if segment else None,
                parse_period(pre) if pre else 0.0)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None


def run(name: str, pattern: str, duration: float | None, segment: str | None,
        pre: str | None, broker: str | None, frames: int | None = None) -> None:
    period, preroll = periods(segment, pre)
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
                                        f"stopped by {stop.signal}", duration, frames)
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


def run_many(names: list[str], pattern: str, duration: float | None, segment: str | None,
             pre: str | None, broker: str | None) -> None:
    """Several streams (or patterns) recorded from packets by this one process."""
    period, preroll = periods(segment, pre)
    try:
        check_names(names, pattern)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    check_pattern(pattern.replace(STREAM, "probe"), make_dirs=True)

    def said(name: str, f: SegmentFile, reason: str) -> None:
        c = f.codec
        click.echo(f"recording {name} from packets (no re-encoding) to {f.path}: {reason}, "
                   f"{c.name} {c.width}x{c.height}", err=True)

    from framebus.clients.record import StopRequest

    recordings = Recordings(names, pattern, period, preroll, broker, on_file=said)
    reason = "aborted"
    click.echo(f"{', '.join(names)}: packet mode (copying packets, no decoding), "
               "one process for every stream", err=True)
    with StopRequest() as stop:
        try:
            reason = recordings.run(lambda: stop.signal and f"stopped by {stop.signal}",
                                    duration)
        finally:
            recordings.close()
            for name, rec in sorted(recordings.streams.items()):
                end = f"failed: {rec.failed}" if rec.failed else f"{rec.lost} lost"
                click.echo(f"{name}: {rec.remuxer.packets} packets in "
                           f"{len(rec.remuxer.files)} file(s), {end}", err=True)
            click.echo(f"{reason}: {recordings.packets} packets of {len(recordings.streams)} "
                       "stream(s)", err=True)
    if any(rec.failed for rec in recordings.streams.values()):
        raise click.ClickException("the recording of some streams failed (said above)")
    if not recordings.packets:
        raise click.ClickException(f"no packet of {', '.join(names)} was recorded")
