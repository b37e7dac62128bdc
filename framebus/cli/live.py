"""`framebus demo` and `framebus watch`: a live consumer's view of a stream."""

from __future__ import annotations

import subprocess
import time
from contextlib import ExitStack
from typing import Any, get_args

import click
from rich.live import Live
from rich.table import Table

from ..discovery import broker_answers
from ..errors import Timeout
from ..options import SIZE, broker_option
from ..paths.base import Mode
from ..spec import Size
from ..support import children
from ..support.rates import RateMeter
from .common import err_console, log


@click.command()
@click.argument("name")
@click.option("--duration", type=float, default=None, help="Stop after this many seconds.")
@click.option("--mode", type=click.Choice(get_args(Mode)), default="latest", show_default=True)
@broker_option
def watch(name: str, duration: float | None, mode: Mode, broker: str) -> None:
    """Subscribe to NAME and show live frame rate, latency and drops."""
    try:
        _watch(name, duration, mode, broker)
    except KeyboardInterrupt:
        pass


def _watch(name: str, duration: float | None, mode: Mode, broker: str) -> None:
    from ..subscriber import Subscriber

    meter = RateMeter()  # each frame, with its latency
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


def _ms(meter: RateMeter, percentile: float) -> str:
    seconds = meter.percentile(percentile)
    return "-" if seconds is None else f"{seconds * 1e3:.2f} ms"


def _watch_table(sub: Any, meter: RateMeter) -> Table:
    table = Table(title=f"framebus watch {sub.name}", box=None, header_style="bold")
    for col in ("received", "fps", "latency p50", "latency p99", "dropped", "shape"):
        table.add_column(col, justify="right")
    shape = "-" if sub.info is None else "x".join(map(str, sub.info.shape))
    table.add_row(str(sub.received), f"{meter.rate:.1f}", _ms(meter, 50), _ms(meter, 99),
                  str(sub.dropped), shape)
    if not sub.connected:
        table.caption = "waiting for the stream to appear..."
    return table


def _watch_line(sub: Any, meter: RateMeter) -> str:
    if not sub.received:
        return f"{sub.name}: waiting for frames..."
    return (f"{sub.name}: {sub.received} frames, {meter.rate:.1f} fps, latency p50 "
            f"{_ms(meter, 50)} p99 {_ms(meter, 99)}, {sub.dropped} dropped")


@click.command()
@click.option("--name", default="demo", show_default=True, help="Stream name.")
@click.option("--size", type=SIZE, default="1280x720", show_default=True, help="WIDTHxHEIGHT.")
@click.option("--fps", default=30.0, show_default=True)
@click.option("--duration", type=float, default=None, help="Stop after this many seconds.")
@broker_option
def demo(name: str, size: Size, fps: float, duration: float | None, broker: str) -> None:
    """A broker, a test-pattern stream and a live consumer, all in one go.

    The broker and the decoder run as children in sessions of their own: a Ctrl-C
    reaches the demo alone, which stops the decoder (unlinking its ring), then the broker.
    """
    procs: list[subprocess.Popen] = []
    try:
        if not broker_answers(broker, timeout=0.5):
            procs.append(children.spawn(["broker", "--bind", broker],
                                        stdin=subprocess.DEVNULL))
        # The demo's producer is a real decoder worker, fed by the built-in test pattern.
        procs.append(children.spawn(["decode", "testsrc", "--name", name, "--size", str(size),
                                     "--fps", str(fps), "--broker", broker],
                                    stdin=subprocess.DEVNULL))
        log.info("demo: stream %r at %s, %s fps; in another shell try `framebus ls` "
                 "or `python examples/opencv_client.py`; Ctrl-C stops", name, size, fps)
        _watch(name, duration, "latest", broker)
    except KeyboardInterrupt:
        pass
    finally:
        for proc in reversed(procs):  # the decoder first: it unregisters from the broker
            children.stop(proc)
