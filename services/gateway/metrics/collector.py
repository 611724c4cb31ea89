"""Prometheus metrics of the gateway (prometheus-client), served at `/metrics`.

Figures that describe the present (volumes, queue, workers, clients, heartbeats) come from a
custom collector that reads the runtime at scrape time, so they are always current and a
removed volume simply stops appearing: nothing per volume is kept between scrapes. Scans by
outcome and their duration are events, counted as they finish (they restart from zero with
the gateway, as Prometheus counters do).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, get_args

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    ProcessCollector,
    disable_created_metrics,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from common.messages import ScanErrorCode
from services.gateway.storage.store import JobRow

if TYPE_CHECKING:
    from services.gateway.runtime import GatewayRuntime

PREFIX = "volumeviz"
DURATION_BUCKETS_SECONDS = (0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600)
VOLUME_LABELS = ["volume", "driver"]


def outcome_label(row: JobRow) -> str:
    """`completed`, or the failure's code in lower case (`scan_path_error`, ...)."""
    return row.failure.code.lower() if row.failure else "completed"


class RuntimeCollector:
    """Reads the gateway's current state on every scrape."""

    def __init__(self, state: GatewayRuntime) -> None:
        self.state = state

    def collect(self) -> Iterable[Metric]:
        yield from self._volumes()
        state = self.state
        yield _gauge(
            "scan_queue_depth", "Scan jobs waiting for a worker", state.scans.queue_depth()
        )
        yield _gauge("scanner_workers", "Scanner workers alive", state.broker.alive_count())
        yield _gauge("scanner_workers_busy", "Scanner workers scanning", state.broker.busy_count())
        yield _gauge(
            "scanner_workers_abandoned",
            "Scanner workers left behind in a hung filesystem",
            len(state.broker.stuck_workers()),
        )
        yield _gauge(
            "volumes_stuck", "Volumes whose scans time out, in back-off", len(state.scans.stuck)
        )
        yield _gauge(
            "results_in_memory", "Latest scan results held in memory", state.catalog.result_count()
        )
        yield _gauge(
            "scheduled_scans_pending",
            "Scans queued by the scheduler and not finished yet",
            state.scheduler.pending_count(),
        )
        yield _gauge("websocket_clients", "Connected WebSocket clients", len(state.hub.clients))
        yield self._heartbeats()
        yield self._listing_answers()
        yield from self._live()

    def _live(self) -> Iterable[Metric]:
        live = self.state.live.as_json()
        yield _gauge(
            "live_active", "1 while the live tracker follows the filesystem", live["active"]
        )
        yield _gauge(
            "live_followed_volumes", "Volumes whose figures are live", live["followed_volumes"]
        )
        yield _gauge(
            "live_events_per_second", "File-system events, last 10 s", live["events_per_second"]
        )
        yield CounterMetricFamily(
            f"{PREFIX}_live_events",
            "File-system events the tracker read",
            value=live["events_total"],
        )
        yield CounterMetricFamily(
            f"{PREFIX}_live_resyncs",
            "Volumes read again because events were lost",
            value=live["lost_event_resyncs"],
        )

    def _volumes(self) -> Iterable[Metric]:
        families = {
            "size": _family(
                "volume_size_bytes", "Apparent size (total_size): live figures, else the last scan"
            ),
            "usage": _family("volume_disk_usage_bytes", "Allocated bytes (disk_usage), likewise"),
            "files": _family("volume_files", "Non-directory entries (file_count), likewise"),
            "updated": _family(
                "volume_size_updated_timestamp_seconds", "When those figures were current"
            ),
            "when": _family(
                "volume_last_scan_timestamp_seconds", "When the last scan finished (Unix time)"
            ),
        }
        views = self.state.catalog.views()
        for view in views:
            labels = [view.record.name, view.record.driver]
            figures = view.live if view.json["size_source"] == "live" else None
            if figures is not None:
                families["updated"].add_metric(labels, figures.updated_at.timestamp())
                families["size"].add_metric(labels, figures.total_size)
                families["usage"].add_metric(labels, figures.disk_usage)
                families["files"].add_metric(labels, figures.file_count)
            result = view.result
            if result is None:
                continue
            if figures is None:
                families["updated"].add_metric(labels, result.scanned_at.timestamp())
                families["size"].add_metric(labels, result.total_size)
                families["usage"].add_metric(labels, result.disk_usage)
                families["files"].add_metric(labels, result.file_count)
            families["when"].add_metric(labels, result.scanned_at.timestamp())
        yield _gauge("volumes", "Volumes the engine lists", len(views))
        yield from families.values()

    def _listing_answers(self) -> Metric:
        family = CounterMetricFamily(
            f"{PREFIX}_listing_answers",
            "GET /volumes answers by where they were made: front (kept bytes, before Quart), "
            "cached (kept bytes, in Quart), encoded (a page built anew)",
            labels=["answered_by"],
        )
        answers = self.state.listings.answers
        for where in ("front", "cached", "encoded"):
            family.add_metric([where], answers[where])
        return family

    def _heartbeats(self) -> Metric:
        family = GaugeMetricFamily(
            f"{PREFIX}_heartbeat_age_seconds",
            "Seconds since the last heartbeat of each service instance",
            labels=["service", "instance"],
        )
        watcher_age = self.state.state.watcher_age_seconds()
        if watcher_age is not None:
            family.add_metric(["watcher", self.state.state.epoch or ""], watcher_age)
        now = time.monotonic()
        for worker in list(self.state.broker.workers.values()):
            family.add_metric(["scanner", worker.worker_id], max(0.0, now - worker.last_seen))
        return family


def _family(name: str, documentation: str) -> GaugeMetricFamily:
    return GaugeMetricFamily(f"{PREFIX}_{name}", documentation, labels=VOLUME_LABELS)


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(f"{PREFIX}_{name}", documentation, value=value)


class GatewayMetrics:
    """The gateway's registry: scan events plus the runtime collector."""

    def __init__(self, state: GatewayRuntime) -> None:
        disable_created_metrics()  # type: ignore[no-untyped-call]  # no `_created` series
        self.registry = CollectorRegistry()
        self.scans = Counter(
            f"{PREFIX}_scans",
            "Scans finished, by outcome (completed or the error code)",
            ["outcome"],
            registry=self.registry,
        )
        for outcome in ("completed", *(code.lower() for code in get_args(ScanErrorCode))):
            self.scans.labels(outcome)  # every outcome is exported from the start, at 0
        self.duration = Histogram(
            f"{PREFIX}_scan_duration_seconds",
            "Walk time of completed scans",
            buckets=DURATION_BUCKETS_SECONDS,
            registry=self.registry,
        )
        self.registry.register(RuntimeCollector(state))
        ProcessCollector(registry=self.registry)

    def scan_finished(self, row: JobRow) -> None:
        self.scans.labels(outcome_label(row)).inc()
        if row.result is not None:
            self.duration.observe(row.result.duration / 1e9)
