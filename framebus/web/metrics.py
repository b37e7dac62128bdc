"""/metrics for Prometheus: every figure of `ls` and `stat`, as framebus_* series.

A custom Collector reads the Watch's last listing when Prometheus scrapes: no figure is
kept twice, and a scrape never asks the broker. Every series is labelled by stream and
host; a figure a stream does not report (a test pattern has no decode errors) is left out
rather than sent as 0.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from .streams import Row, Watch

LABELS = ["stream", "host"]
Read = Callable[[Row], Any]


def _field(key: str) -> Read:
    return lambda row: row[key]


def _packets(key: str) -> Read:
    return lambda row: (row["packets"] or {}).get(key)


# The producer's counts (dropped, errors, reconnects) are counters: they only grow, and
# start again at 0 when the producer restarts, which Prometheus's rate() expects of them.
#: (family, name, help, how to read it from a row: None when the stream does not say).
SERIES: list[tuple[type, str, str, Read]] = [
    (GaugeMetricFamily, "fps", "Frames published per second.", _field("fps")),
    (GaugeMetricFamily, "decode_fps", "Frames decoded per second.", _field("decode_fps")),
    (GaugeMetricFamily, "subscribers", "Subscribers connected to the stream.",
     _field("subscribers")),
    (GaugeMetricFamily, "last_frame_age_seconds", "Seconds since the stream's last frame.",
     _field("age")),
    (GaugeMetricFamily, "producer_alive", "1 while the stream's producer is alive.",
     _field("alive")),
    (GaugeMetricFamily, "decoding", "1 while the decoder decodes, 0 while it idles.",
     _field("decoding")),
    (CounterMetricFamily, "dropped", "Frames the producer dropped.", _field("dropped")),
    (CounterMetricFamily, "decode_errors", "Decode errors.", _field("decode_errors")),
    (CounterMetricFamily, "reconnects", "Reconnections to the source.", _field("reconnects")),
    (GaugeMetricFamily, "packets_per_second", "Compressed packets published per second.",
     _packets("fps")),
    (GaugeMetricFamily, "bitrate_bits_per_second", "The packet stream's bitrate.",
     _packets("bitrate")),
    (GaugeMetricFamily, "keyframe_interval_seconds", "Seconds between key frames.",
     _packets("keyint")),
]


class StreamsCollector(Collector):
    """The figures of the Watch's last listing, as Prometheus metric families."""

    def __init__(self, watch: Watch) -> None:
        self.watch = watch

    def collect(self) -> Iterator[Metric]:
        rows = [self.watch.rows[n] for n in sorted(self.watch.rows)]
        up = GaugeMetricFamily("framebus_broker_up", "1 if the broker's last listing came.")
        up.add_metric([], 0.0 if self.watch.error else 1.0)
        yield up
        info = InfoMetricFamily("framebus_stream", "What a stream is: geometry, format, "
                                "kind, decode mode.", labels=LABELS)
        for row in rows:
            info.add_metric(_labels(row), {
                "geometry": row["geometry"], "format": row["format"], "kind": row["kind"],
                "decode": row["decode"] or ""})
        yield info
        for family_type, name, text, read in SERIES:
            family = family_type(f"framebus_{name}", text, labels=LABELS)
            for row in rows:
                value = read(row)
                if value is not None:
                    family.add_metric(_labels(row), float(value))
            yield family


def _labels(row: Row) -> list[str]:
    return [row["name"], row["host"]]


METRICS = web.AppKey("metrics", CollectorRegistry)


def install(app: web.Application, watch: Watch) -> None:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StreamsCollector(watch))
    app[METRICS] = registry
    app.router.add_get("/metrics", metrics)


async def metrics(request: web.Request) -> web.Response:
    body = generate_latest(request.app[METRICS])
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
