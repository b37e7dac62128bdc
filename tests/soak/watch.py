"""The soak's observer (tests/soak): what the broker knows, as one JSON line 4 times a second.

    python -m tests.soak.watch        # in the site's host, with FRAMEBUS_BROKER set

Each line: ``{"t": monotonic, "ok": bool, "streams": {name: {"token", "pid", "alive",
"frames"}}, "relays": [{"host", "pid", "alive"}]}``; "ok" is false while the broker does
not answer.
"""

from __future__ import annotations

import json
import signal
import sys
import time

from framebus.discovery import BrokerClient
from framebus.errors import FramebusError

PERIOD = 0.25


def main() -> None:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    client = BrokerClient(timeout=0.2)
    while True:
        started = time.monotonic()
        try:
            # Typed, as every client reads it: a reply leaves out a field at its default
            # (alive, for one), which a dict of the raw reply would miss.
            streams, relays = client.listing()
            news = {"t": time.monotonic(), "ok": True,
                    "streams": {s.name: {"token": s.token.hex(), "pid": s.pid,
                                         "alive": s.alive, "frames": s.frames}
                                for s in streams},
                    "relays": [{"host": r.host, "pid": r.pid, "alive": r.alive}
                               for r in relays]}
        except FramebusError:
            news = {"t": time.monotonic(), "ok": False}
        print(json.dumps(news), flush=True)
        time.sleep(max(0.0, PERIOD - (time.monotonic() - started)))


if __name__ == "__main__":
    main()
