"""What the console shows of every stream: one broker poll, shared by every browser.

A Watch lists the broker's streams every `every` seconds (in a thread of its own: the
broker client waits on its socket) and keeps, for each stream, its row (the figures of
`framebus ls` and `framebus stat`) and a short history of its fps and drops for the
charts. The page's WebSocket, /api/streams and /metrics all read that one snapshot, so
a hundred browsers and a Prometheus cost the broker one listing a poll.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from .. import config
from ..cli.tables import DECODE_MODES, geometry
from ..discovery import BrokerClient
from ..errors import FramebusError
from ..protocol.broker import StreamInfo
from ..shm.segment import pid_alive
from ..support.throttle import Throttle

log = logging.getLogger(__name__)

#: Seconds between listings: a producer that dies shows dead within this of the broker
#: (or, on this host, of its pid) saying so.
EVERY = 0.5
#: Seconds of fps and drops kept for the charts.
WINDOW = 300.0

Row = dict[str, Any]
#: A chart's point: wall time, fps, drops so far.
Sample = tuple[float, float, int]


def rows_of(infos: list[StreamInfo], here: str) -> dict[str, Row]:
    """A row per stream name: a pixel stream with its packet stream's figures, or a packet
    stream that has no pixels. *here* is this host's id: a producer of this host that has
    exited is dead now, without waiting for the broker to miss its heartbeats."""
    packets = {i.name: i for i in infos if i.kind == "packets"}
    rows: dict[str, Row] = {}
    for info in infos:
        if info.kind == "frames" or info.name not in rows:
            rows[info.name] = _row(info, packets.get(info.name), here)
    return rows


def _row(info: StreamInfo, packets: StreamInfo | None, here: str) -> Row:
    f = info.figures
    mode = f.get("decode_mode")
    alive = info.alive and not (info.host == here and not pid_alive(info.pid))
    row: Row = {
        "name": info.name, "host": info.host, "kind": info.kind, "geometry": geometry(info),
        "format": info.fmt, "fps": round(info.fps, 2) if alive else 0.0,
        "decode_fps": f.get("decode_fps"), "subscribers": info.subscribers,
        "dropped": f.get("dropped"), "decode_errors": f.get("decode_errors"),
        "reconnects": f.get("reconnects"),
        "decode": DECODE_MODES[mode] if isinstance(mode, int) and 0 <= mode < len(
            DECODE_MODES) else None,
        "decoding": None if "decoding" not in f else bool(f["decoding"]),
        "age": None if info.age is None else round(info.age, 1),
        "alive": alive, "pid": info.pid, "packets": None,
    }
    packets = info if info.kind == "packets" else packets
    if packets is not None:
        p = packets.figures
        row["packets"] = {"fps": round(packets.fps, 2), "bitrate": p.get("bitrate"),
                          "keyint": p.get("keyint")}
    return row


class Watch:
    """The broker's streams, listed every *every* seconds while run() runs."""

    def __init__(self, broker: str | None, *, every: float = EVERY,
                 window: float = WINDOW) -> None:
        self.broker = config.broker_address(broker)
        self.every = every
        self.rows: dict[str, Row] = {}
        self.history: dict[str, collections.deque[Sample]] = {}
        self.error: str | None = None  # why the last listing failed, if it did
        self.updated = 0.0  # wall time of the last listing
        self.version = 0  # counts listings, failed ones too
        self._points = max(2, int(window / every))
        self._here = config.host_id()
        self._changed = asyncio.Condition()
        # One thread: the broker client is not thread-safe, and one listing at a time.
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="framebus-web-watch")
        self._client = BrokerClient(self.broker, timeout=max(1.0, 2 * every))
        self._said = Throttle(log, 30.0)

    async def run(self) -> None:
        """List the streams until cancelled; the client closes with it."""
        loop = asyncio.get_running_loop()
        try:
            while True:
                started = loop.time()
                await self._poll(loop)
                await asyncio.sleep(max(0.0, self.every - (loop.time() - started)))
        finally:
            self._thread.submit(self._client.close)
            self._thread.shutdown(wait=False)

    async def _poll(self, loop: asyncio.AbstractEventLoop) -> None:
        try:
            infos, _ = await loop.run_in_executor(self._thread, self._client.listing, None,
                                                  None, "all")
        except FramebusError as exc:
            self.error = f"broker {self.broker}: {exc}"
            self._said.warning("%s", self.error, key="listing")
        else:
            self.error = None
            self._take(rows_of(infos, self._here))
        self.updated = time.time()
        async with self._changed:
            self.version += 1
            self._changed.notify_all()

    def _take(self, rows: dict[str, Row]) -> None:
        now = time.time()
        for name in self.history.keys() - rows.keys():
            del self.history[name]  # forgotten by the broker
        for name, row in rows.items():
            points = self.history.setdefault(name, collections.deque(maxlen=self._points))
            points.append((round(now, 2), row["fps"], row["dropped"] or 0))
        self.rows = rows

    async def changed(self, seen: int) -> int:
        """Wait until a listing newer than version *seen* is in; its version."""
        async with self._changed:
            await self._changed.wait_for(lambda: self.version > seen)
            return self.version

    def snapshot(self) -> dict[str, Any]:
        """/api/streams: every row, sorted by name, and how fresh they are."""
        return {"broker": self.broker, "updated": self.updated, "error": self.error,
                "streams": [self.rows[n] for n in sorted(self.rows)]}
