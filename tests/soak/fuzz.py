"""The soak's fuzzer (tests/soak): malformed requests at the broker or the relay, seeded.

    python -m tests.soak.fuzz broker|relay ADDRESS --count N --seed S

Sends N messages made by the fuzz tests' hypothesis strategies (framebus.testing.hostile):
malformed envelopes, random and truncated bytes, wrong types and ranges in every field,
oversized messages, requests for streams that do not exist. Each one must be refused with
a reason, answered, or (oversized) cut by ZeroMQ; none may go unanswered, but for a want
of a stream registered on this host, which the relay holds until the stream has a frame.
Prints one JSON line: the count of each outcome, and whether the service still answered.
"""

from __future__ import annotations

import json
import time

import click

from framebus import config
from framebus.discovery import BrokerClient
from framebus.errors import ProtocolError
from framebus.protocol import relay as wire
from framebus.testing import hostile as garbage
from framebus.testing import probers

SERVICES = {"broker": (garbage.broker_messages, probers.BrokerProber),
            "relay": (garbage.relay_messages, probers.RelayProber)}


@click.command()
@click.argument("service", type=click.Choice(sorted(SERVICES)))
@click.argument("address")
@click.option("--count", default=150, show_default=True)
@click.option("--seed", default=1, show_default=True)
def main(service: str, address: str, count: int, seed: int) -> None:
    strategy, prober_class = SERVICES[service]
    messages = garbage.draw(strategy(), count, seed)
    started = time.monotonic()
    unanswered = []  # the first few messages with no proper answer, to reproduce them
    registered = _registered_here() if service == "relay" else set()
    with prober_class(address) as prober:
        for message in messages:
            outcome = prober.probe(message)
            if outcome == probers.SILENT and _wants(message) in registered:
                # A credit for a stream registered on this host is held until it has a
                # frame: by the protocol, not a stall. (The broker fuzzer registers such
                # streams, with live pids such as 1, that never publish.)
                prober.counts[outcome] -= 1
                prober.counts["held"] = prober.counts.get("held", 0) + 1
            elif outcome in (probers.SILENT, probers.GARBLED) and len(unanswered) < 5:
                unanswered.append([outcome, [part[:200].hex() for part in message]])
        alive = prober.alive(timeout=2.0)
        counts = dict(prober.counts)
    print(json.dumps({"sent": len(messages), **counts, "alive_after": alive,
                      "seconds": round(time.monotonic() - started, 2),
                      "unanswered_examples": unanswered}), flush=True)


def _registered_here() -> set[str]:
    """The streams the broker lists on this host, as the relay would see them."""
    with BrokerClient(timeout=2.0) as client:
        return {s.name for s in client.streams() if s.host == config.host_id()}


def _wants(message: list[bytes]) -> str | None:
    """The stream a message validly wants, if it is one well-formed want."""
    try:
        want = wire.parse_request(message[0]) if len(message) == 1 else None
    except ProtocolError:
        return None
    return want.stream if want is not None else None


if __name__ == "__main__":
    main()
