"""framebus view: watch a stream live in an OpenCV window.

Usage::

    python -m framebus.clients.view NAME [--snapshot out.jpg] [--every 1] [--seconds N]
    python clients/view.py NAME

The window shows the newest frame (any pixel format, converted to BGR) with
the live frame rate, latency and drop counts drawn over a private copy; q or
Esc quits, as does closing the window or --seconds. A frame the producer
overwrote while it was being converted is thrown away, never shown torn.

Without a display (no $DISPLAY, or an OpenCV without GUI support such as the
opencv-python-headless that framebus installs, whose imshow raises cv2.error)
it says so once and instead rewrites an image file (--snapshot, default
NAME.jpg) with the newest frame every --every seconds. The file holds the
frame itself, without the overlay, and is replaced in one step.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

import click
import cv2
import numpy as np

import framebus
from framebus.options import broker_option
from framebus.support.rates import RateMeter

log = logging.getLogger("framebus.clients.view")

QUIT_KEYS = (ord("q"), 27)  # q, Esc
_SLICE = 0.1  # longest wait for a frame, so keys and --seconds are seen promptly


@dataclass
class Counts:
    shown: int = 0
    discarded: int = 0  # overwritten by the producer while we converted them


def has_display() -> bool:
    """Whether a window could open at all; OpenCV may still lack GUI support."""
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def status_line(sub: framebus.Subscriber, meter: RateMeter, counts: Counts) -> str:
    latency = meter.percentile(50)
    shown = "-" if latency is None else f"{latency * 1e3:.1f} ms"
    return (f"{meter.rate:.1f} fps  latency {shown}  dropped {sub.dropped}"
            f"  discarded {counts.discarded}")


def draw_overlay(image: np.ndarray, text: str) -> None:
    """Draw *text* in the top-left corner, legible on any background (outlined)."""
    for color, thickness in (((0, 0, 0), 3), ((255, 255, 255), 1)):
        cv2.putText(image, text, (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, color, thickness,
                    cv2.LINE_AA)


class Window:
    """The OpenCV window; ``ok`` turns False if OpenCV turns out to have no GUI."""

    def __init__(self, name: str) -> None:
        self.title = f"framebus view: {name}"
        self.ok = True
        self._opened = False

    def show(self, image: np.ndarray) -> None:
        try:
            cv2.imshow(self.title, image)
            self._opened = True
        except cv2.error as exc:
            log.debug("imshow failed: %s", exc)
            self.ok = False

    def quit_requested(self) -> bool:
        """Pump the GUI events; True on q, Esc, or the window being closed."""
        if not self._opened:
            return False
        if (cv2.waitKey(1) & 0xFF) in QUIT_KEYS:
            return True
        return cv2.getWindowProperty(self.title, cv2.WND_PROP_VISIBLE) < 1

    def close(self) -> None:
        if self._opened:
            cv2.destroyAllWindows()


class SnapshotFile:
    """The no-display output: the newest frame, written every *every* seconds."""

    def __init__(self, path: Path, every: float) -> None:
        self.path = path
        self.every = every
        self._next = 0.0
        self.written = 0

    def due(self) -> bool:
        return time.monotonic() >= self._next

    def write(self, image: np.ndarray) -> None:
        tmp = self.path.with_name(f".{self.path.stem}.{os.getpid()}.tmp{self.path.suffix}")
        try:
            if not cv2.imwrite(str(tmp), image):
                raise click.ClickException(f"cannot write {self.path}: OpenCV's imwrite failed")
            os.replace(tmp, self.path)  # readers never see half an image
        finally:
            tmp.unlink(missing_ok=True)
        self.written += 1
        self._next = time.monotonic() + self.every


def check_writable_image(path: Path) -> None:
    if not cv2.haveImageWriter(str(path)):
        raise click.ClickException(
            f"cannot write {path}: unknown image extension {path.suffix or '(none)'!r}; "
            "use .jpg or .png")


def view(sub: framebus.Subscriber, window: Window | None, snapshots: SnapshotFile,
         end: float | None) -> Counts:
    """Show frames until the user quits, *end* (monotonic) passes, or Ctrl-C."""
    meter, counts = RateMeter(), Counts()
    try:
        while end is None or time.monotonic() < end:
            if window is not None and window.quit_requested():
                break
            wait = _SLICE if end is None else max(0.0, min(_SLICE, end - time.monotonic()))
            try:
                frame = sub.recv(timeout=wait)
            except framebus.Timeout:
                continue
            meter.add(frame.age)
            if window is None and not snapshots.due():
                continue  # without a window, convert only the frames that get written
            image = frame.bgr_copy()
            if not frame.valid():
                counts.discarded += 1  # the producer lapped the slot: possibly torn
                continue
            if window is not None:
                window.show(_with_overlay(image, status_line(sub, meter, counts)))
                if window.ok:
                    counts.shown += 1
                    continue
                window = None
                click.echo(f"this OpenCV has no GUI support: writing the newest frame to "
                           f"{snapshots.path} every {snapshots.every:g} s instead", err=True)
            snapshots.write(image)
            counts.shown += 1
    except KeyboardInterrupt:
        pass
    return counts


def _with_overlay(image: np.ndarray, text: str) -> np.ndarray:
    """A copy of *image* with *text* on it; *image* stays the clean frame."""
    shown = image.copy()
    draw_overlay(shown, text)
    return shown


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("name")
@click.option("--snapshot", "snapshot_path", type=click.Path(dir_okay=False, path_type=Path),
              default=None, help="Without a display: image file to keep rewriting "
              "[default: NAME.jpg].")
@click.option("--every", type=click.FloatRange(min=0.01), default=1.0, show_default=True,
              help="Without a display: seconds between two writes of the snapshot.")
@click.option("--seconds", type=click.FloatRange(min=0), default=None,
              help="Stop after this many seconds.")
@broker_option
def command(name: str, snapshot_path: Path | None, every: float, seconds: float | None,
            broker: str) -> None:
    """Show stream NAME live in a window, or keep a snapshot file updated without a display."""
    logging.basicConfig(format="%(levelname)s %(name)s: %(message)s")  # no-op under `framebus`
    snapshots = SnapshotFile(snapshot_path or Path(f"{name}.jpg"), every)
    check_writable_image(snapshots.path)
    window = Window(name) if has_display() else None
    if window is None:
        click.echo(f"no display ($DISPLAY is not set): writing the newest frame to "
                   f"{snapshots.path} every {every:g} s instead", err=True)
    end = None if seconds is None else time.monotonic() + seconds
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler)  # stop like Ctrl-C
    try:
        with framebus.Subscriber(name, broker=broker) as sub:
            counts = view(sub, window, snapshots, end)
            click.echo(f"{name}: {sub.received} frames received, {counts.shown} shown, "
                       f"{sub.dropped} dropped, {counts.discarded} discarded as overwritten"
                       + (f", {snapshots.written} snapshots written to {snapshots.path}"
                          if snapshots.written else ""))
    except framebus.InvalidName as exc:
        raise click.ClickException(str(exc)) from None
    except ValueError as exc:  # a pixel format with no BGR conversion
        raise click.ClickException(f"cannot show {name!r}: {exc}") from None
    finally:
        signal.signal(signal.SIGTERM, previous)
        if window is not None:
            window.close()


if __name__ == "__main__":
    command()
