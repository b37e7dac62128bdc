"""The soak's fuzzer (bench/soak.py): malformed requests at the broker or the relay, seeded.

    python bench/soak_fuzz.py broker|relay ADDRESS --count N --seed S

Sends N messages made by the fuzz tests' hypothesis strategies (tests/garbage.py):
malformed envelopes, random and truncated bytes, wrong types and ranges in every field,
oversized messages, requests for streams that do not exist. Each one must be refused with
a reason, answered, or (oversized) cut by ZeroMQ; none may go unanswered. Prints one JSON
line: the count of each outcome, and whether the service still answered at the end.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import click

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
import garbage  # noqa: E402

SERVICES = {"broker": (garbage.broker_messages, garbage.BrokerProber),
            "relay": (garbage.relay_messages, garbage.RelayProber)}


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
    with prober_class(address) as prober:
        for message in messages:
            outcome = prober.probe(message)
            if outcome in (garbage.SILENT, garbage.GARBLED) and len(unanswered) < 5:
                unanswered.append([outcome, [part[:200].hex() for part in message]])
        alive = prober.alive(timeout=2.0)
        counts = dict(prober.counts)
    print(json.dumps({"sent": len(messages), **counts, "alive_after": alive,
                      "seconds": round(time.monotonic() - started, 2),
                      "unanswered_examples": unanswered}), flush=True)


if __name__ == "__main__":
    main()
