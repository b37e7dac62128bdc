"""The soak's second Unix user (tests/soak): made for the run, trying what it must not.

The fault `intruder` runs tests/intruder.py as a process of that user on host A, against
the witness stream: map its ring, replace it (with a ring of its own, with one forged to
claim the producer's pid, with the producer's own token and ring), fake a stream and a
relay of another host, heartbeat and unregister it. Every attempt must be refused, and the
stream's readers must not notice.
"""

from __future__ import annotations

import json
from contextlib import AbstractContextManager

from framebus.testing.users import system_user

USER = "fbsoakintruder"
ROUNDS = 20  # of every attempt, per fault


def second_user() -> AbstractContextManager[tuple[int, int]]:
    """A system user of its own for the run, removed after it."""
    return system_user(USER)


def judge(stdout: str) -> tuple[dict[str, int], list[str]]:
    """Totals of the intruder's report (tried, refused, accepted) and what it got away with."""
    results: dict[str, dict[str, int]] = json.loads(stdout.strip().splitlines()[-1])
    tried = sum(sum(counts.values()) for counts in results.values())
    got_away = {what: counts["accepted"] for what, counts in results.items()
                if counts.get("accepted")}
    accepted = sum(got_away.values())
    return ({"tried": tried, "refused": tried - accepted, "accepted": accepted},
            [f"{what} ({n} times)" for what, n in got_away.items()])
