"""Issue 7: Prometheus metrics at /metrics, read back with prometheus_client's own parser."""

from __future__ import annotations

import shutil
from datetime import datetime

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.support.api import refresh, start_services
from tests.support.engine import PrivateEngine
from tests.support.processes import Stack
from tests.support.trees import du_bytes, make_known_tree, mountpoint
from tests.support.waiting import wait_until

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def _scrape(stack: Stack) -> Samples:
    response = httpx.get(stack.base_url + "/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    samples: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def _value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def _with_name(samples: Samples, name: str) -> list[dict[str, str]]:
    return [dict(labels) for (sample, labels) in samples if sample == name]


def test_metrics_report_known_volumes_scans_and_services(
    engine: PrivateEngine, stack: Stack
) -> None:
    engine.client.volumes.create("vv-m-tree")
    tree = mountpoint(engine, "vv-m-tree")
    make_known_tree(tree)
    engine.client.volumes.create("vv-m-small")
    (mountpoint(engine, "vv-m-small") / "f").write_bytes(b"m" * 5000)
    engine.client.volumes.create("vv-m-broken")
    engine.client.volumes.create("vv-m-unscanned")
    shutil.rmtree(mountpoint(engine, "vv-m-broken"))
    # Scans' figures only: the live tracker would measure vv-m-unscanned (test_live_sizes.py).
    start_services(
        stack, "vv-m-tree", "vv-m-small", "vv-m-broken", "vv-m-unscanned", VV_LIVE_SIZES="off"
    )
    results = {name: refresh(stack, name).json()["result"] for name in ("vv-m-tree", "vv-m-small")}
    assert refresh(stack, "vv-m-broken").status_code == 422

    def with_client_counted() -> Samples:
        scraped = _scrape(stack)
        return scraped if _value(scraped, "volumeviz_websocket_clients") else {}

    with stack.ws():
        samples = wait_until(with_client_counted, 10, message="the WebSocket client never counted")
    assert _value(samples, "volumeviz_websocket_clients") == 1

    for name, result in results.items():
        labels = {"volume": name, "driver": "local"}
        assert _value(samples, "volumeviz_volume_size_bytes", **labels) == result["total_size"]
        assert (
            _value(samples, "volumeviz_volume_disk_usage_bytes", **labels) == (result["disk_usage"])
        )
        assert _value(samples, "volumeviz_volume_files", **labels) == result["file_count"]
        scanned_at = datetime.fromisoformat(result["scanned_at"]).timestamp()
        assert _value(samples, "volumeviz_volume_last_scan_timestamp_seconds", **labels) == (
            scanned_at
        )
    assert _value(samples, "volumeviz_volume_size_bytes", volume="vv-m-small", driver="local") == (
        5000
    )
    tree_usage = {"volume": "vv-m-tree", "driver": "local"}
    assert _value(samples, "volumeviz_volume_disk_usage_bytes", **tree_usage) == du_bytes(tree)
    assert _value(samples, "volumeviz_volume_files", **tree_usage) == 15
    sized = {labels["volume"] for labels in _with_name(samples, "volumeviz_volume_size_bytes")}
    assert sized == {"vv-m-tree", "vv-m-small"}  # no figure for a volume never measured
    assert _value(samples, "volumeviz_volumes") == 4

    assert _value(samples, "volumeviz_scans_total", outcome="completed") == 2
    assert _value(samples, "volumeviz_scans_total", outcome="scan_path_error") == 1
    assert _value(samples, "volumeviz_scans_total", outcome="scan_timeout") == 0
    assert _value(samples, "volumeviz_scan_duration_seconds_count") == 2
    assert _value(samples, "volumeviz_scan_duration_seconds_bucket", le="+Inf") == 2
    assert _value(samples, "volumeviz_scan_queue_depth") == 0
    assert _value(samples, "volumeviz_scanner_workers") == 2
    assert _value(samples, "volumeviz_scanner_workers_busy") == 0

    ages = _with_name(samples, "volumeviz_heartbeat_age_seconds")
    assert sorted(labels["service"] for labels in ages) == ["scanner", "scanner", "watcher"]
    for labels in ages:
        assert _value(samples, "volumeviz_heartbeat_age_seconds", **labels) is not None

    engine.client.volumes.get("vv-m-small").remove()
    wait_until(
        lambda: _value(_scrape(stack), "volumeviz_volumes") == 3,
        15,
        message="a removed volume is still counted",
    )
    after = _scrape(stack)
    sized = {labels["volume"] for labels in _with_name(after, "volumeviz_volume_size_bytes")}
    assert sized == {"vv-m-tree"}  # a removed volume leaves no series behind
