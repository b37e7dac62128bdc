"""framebus snapshot: write the newest frame of a stream to an image file.

Usage::

    python -m framebus.clients.snapshot NAME OUT.png [--timeout 5] [--broker ADDR]
    python clients/snapshot.py NAME OUT.jpg

Waits for the stream's newest frame, converts it to BGR whatever its pixel
format, and writes it with OpenCV; the file's extension picks the image format
(.png is lossless, .jpg is not). The producer never waits for readers, so the
frame may be overwritten while it is converted: that result is thrown away and
the next frame taken, until the timeout. The file is replaced in one step, so a
program watching it never reads half an image. Exit status 1, with a message,
when the stream does not exist or sends nothing within the timeout.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import click
import cv2
import numpy as np

import framebus
from framebus import pixfmt
from framebus.options import broker_option

log = logging.getLogger("framebus.clients.snapshot")


def grab_bgr(sub: framebus.Subscriber, timeout: float) -> tuple[np.ndarray, framebus.Frame]:
    """The newest whole frame as a private BGR array, and the frame it came from.

    Retries with the next frame when the writer reused the slot during the
    conversion; raises framebus.Timeout when no whole frame came in time.
    """
    deadline = time.monotonic() + timeout
    while True:
        frame = sub.recv(timeout=max(0.0, deadline - time.monotonic()))
        image = frame.bgr_copy()
        if frame.valid():
            return image, frame
        log.debug("%s: frame %d overwritten while converting; taking the next", sub.name,
                  frame.seq)


def check_writable_image(path: Path) -> None:
    """Refuse, before waiting for any frame, a file OpenCV has no writer for."""
    if not cv2.haveImageWriter(str(path)):
        raise click.ClickException(
            f"cannot write {path}: unknown image extension {path.suffix or '(none)'!r}; "
            "use .png (lossless) or .jpg")
    if not path.parent.is_dir():
        raise click.ClickException(f"cannot write {path}: no directory {path.parent}")


def write_image(path: Path, image: np.ndarray) -> None:
    """Write *image* to *path* atomically (temporary file, then rename).

    A program reading *path* sees the old image or the new one, never half of one.
    """
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")
    try:
        try:
            ok = cv2.imwrite(str(tmp), image)
        except cv2.error as exc:
            raise click.ClickException(f"cannot write {path}: {exc}") from None
        if not ok:
            raise click.ClickException(f"cannot write {path}: OpenCV's imwrite failed")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def no_frame_error(name: str, broker: str, timeout: float) -> click.ClickException:
    """Why no frame came: no broker, no such stream, or a stream that sends nothing."""
    try:
        with framebus.BrokerClient(broker, timeout=0.3) as client:
            info = client.lookup(name)
    except framebus.BrokerUnavailable:
        return click.ClickException(
            f"no frame of {name!r} within {timeout:g} s: the broker at {broker} does not "
            "answer (start one with `framebus broker`)")
    except framebus.StreamNotFound:
        return click.ClickException(
            f"no stream named {name!r}: the broker at {broker} does not know it "
            f"(waited {timeout:g} s; `framebus ls` lists the streams)")
    state = "alive" if info.alive else "dead"
    return click.ClickException(
        f"stream {name!r} sent no frame within {timeout:g} s (its producer, pid {info.pid}, "
        f"is {state})")


def snapshot(name: str, out: Path, timeout: float, broker: str) -> framebus.Frame:
    """Write the newest frame of *name* to *out*; returns the frame written."""
    check_writable_image(out)
    with framebus.Subscriber(name, broker=broker) as sub:
        try:
            image, frame = grab_bgr(sub, timeout)
        except framebus.Timeout:
            raise no_frame_error(name, broker, timeout) from None
        except ValueError as exc:  # a pixel format with no BGR conversion
            raise click.ClickException(f"cannot convert {name!r} to an image: {exc}") from None
        write_image(out, image)
        return frame


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("name")
@click.argument("out", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--timeout", type=click.FloatRange(min=0), default=5.0, show_default=True,
              help="Seconds to wait for a frame before giving up (exit status 1).")
@broker_option
def command(name: str, out: Path, timeout: float, broker: str) -> None:
    """Write the newest frame of stream NAME to OUT (.png, .jpg, ...)."""
    logging.basicConfig(format="%(levelname)s %(name)s: %(message)s")  # no-op under `framebus`
    try:
        frame = snapshot(name, out, timeout, broker)
    except framebus.InvalidName as exc:
        raise click.ClickException(str(exc)) from None
    width, height = pixfmt.picture_size(frame.fmt, frame.shape)
    click.echo(f"{out}: frame {frame.seq} of {name} ({width}x{height} {frame.fmt})")


if __name__ == "__main__":
    command()
