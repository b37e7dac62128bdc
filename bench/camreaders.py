"""The readers of bench/cameras.py's site, each a process of its own (their CPU is the
application's, not framebus's):

    python -m bench.camreaders keys --seconds 30 cam0 cam1 ...
        one MultiSubscriber over the key-frame streams; prints {"frames": {name: n}}
    python -m bench.camreaders demand --cycles 2 --on 6 --off 6 cam30
        a reader that comes and goes on a --decode demand stream: how long after it
        subscribes the first picture comes, the rate while it stays, and how long after it
        leaves the decoder says it stopped decoding (its "decoding" figure at the broker)
"""

from __future__ import annotations

import json
import sys
import time

import click

import framebus
from framebus.discovery import BrokerClient
from framebus.multi import MultiSubscriber


@click.group()
def main() -> None:
    pass


@main.command()
@click.argument("names", nargs=-1, required=True)
@click.option("--seconds", type=float, default=30.0)
def keys(names: tuple[str, ...], seconds: float) -> None:
    frames = dict.fromkeys(names, 0)
    with MultiSubscriber(list(names)) as subs:
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            try:
                frame = subs.recv(timeout=left)
            except framebus.Timeout:
                break
            frames[frame.stream] = frames.get(frame.stream, 0) + 1
    json.dump({"frames": frames, "seconds": seconds}, sys.stdout)


def decoding(client: BrokerClient, name: str) -> int | None:
    try:
        return int(client.lookup(name).figures.get("decoding", -1))
    except framebus.FramebusError:
        return None


@main.command()
@click.argument("name")
@click.option("--cycles", type=int, default=2)
@click.option("--on", "on", type=float, default=6.0)
@click.option("--off", "off", type=float, default=6.0)
def demand(name: str, cycles: int, on: float, off: float) -> None:
    result: dict[str, list] = {"first_frame_s": [], "fps": [], "stopped_after_s": []}
    with BrokerClient(None, timeout=1.0) as client:
        for _ in range(cycles):
            with framebus.Subscriber(name, mode="all") as sub:
                start = time.monotonic()
                first, n = None, 0
                while time.monotonic() - start < on:
                    try:
                        sub.recv(timeout=0.5)
                    except framebus.Timeout:
                        continue
                    n += 1
                    if first is None:
                        first = time.monotonic()
                t_first = None if first is None else round(first - start, 2)
                result["first_frame_s"].append(t_first)
                span = time.monotonic() - first if first is not None else 0
                result["fps"].append(round((n - 1) / span, 1) if span > 0 else 0.0)
            left = time.monotonic()
            stopped = None
            while time.monotonic() - left < off:
                if stopped is None and decoding(client, name) == 0:
                    stopped = round(time.monotonic() - left, 2)
                time.sleep(0.1)
            result["stopped_after_s"].append(stopped)
    json.dump(result, sys.stdout)


if __name__ == "__main__":
    main()
