"""Volumes come and go for good: nothing of the gone ones stays in memory, and their stored
history leaves once it is older than the history window."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import httpx
import psutil

from tests.support.api import start_services, volume_listed, volume_with_file
from tests.support.engine import PrivateEngine
from tests.support.processes import Stack
from tests.support.waiting import wait_until

DATABASE = "volumeviz.sqlite3"
ROUNDS = 10
PER_ROUND = 100  # 1,000 volumes in all
KEPT = "vv-stays"
# Generous: a leak of what 1,000 volumes leave behind would be far past it; the exact check
# is the count of results held in memory.
RSS_GROWTH_LIMIT = 24 << 20


def _count(database: Path, query: str) -> int:
    with sqlite3.connect(database) as db:
        row = db.execute(query).fetchone()
    return int(row[0])


def _total(stack: Stack) -> int:
    body: dict[str, Any] = httpx.get(stack.base_url + "/api/v1/volumes?page_size=1").json()
    return int(body["total"])


def _results_in_memory(stack: Stack) -> float:
    for line in httpx.get(stack.base_url + "/metrics").text.splitlines():
        if line.startswith("volumeviz_results_in_memory "):
            return float(line.split()[1])
    raise AssertionError("no volumeviz_results_in_memory metric")


def _all_completed(stack: Stack, scan_ids: list[str]) -> bool:
    with stack.http() as client:
        statuses = [client.get(f"/api/v1/scans/{sid}").json()["status"] for sid in scan_ids]
    return all(status == "completed" for status in statuses)


def test_a_thousand_volumes_churned_leave_nothing_behind(
    engine: PrivateEngine, stack: Stack
) -> None:
    start_services(
        stack,
        VV_HISTORY_DAYS=0.00002,  # under 2 s: the removed volumes' history ages out in the test
        VV_HISTORY_THIN_INTERVAL=0.5,
        VV_SCAN_REQUESTS_PER_MINUTE=100_000,
    )
    volume_with_file(engine, stack, KEPT, b"k" * 1234)
    gateway = psutil.Process(stack["gateway"].pid)
    database = stack.data_dir / DATABASE
    rss: list[int] = []
    for round_ in range(ROUNDS):
        names = [f"vv-churn-{round_}-{i}" for i in range(PER_ROUND)]
        for name in names:
            engine.client.volumes.create(name)
        volume_listed(stack, names[-1])
        wait_until(lambda: _total(stack) == PER_ROUND + 1, 30, message="not all listed")
        accepted = httpx.post(
            stack.base_url + "/api/v1/volumes/bulk-scan", json={"volume_ids": [KEPT, *names]}
        )
        assert accepted.status_code == 202, accepted.text
        scan_ids = list(accepted.json()["scan_ids"].values())
        wait_until(
            lambda ids=scan_ids: _all_completed(stack, ids),  # type: ignore[misc]
            60,
            message="scans not done",
        )
        for name in names:
            engine.client.volumes.get(name).remove()
        wait_until(lambda: _total(stack) == 1, 30, message="removed volumes still listed")
        # Only the volume that stays holds a result in memory.
        wait_until(lambda: _results_in_memory(stack) == 1, 10, message="results kept")
        rss.append(gateway.memory_info().rss)

    assert rss[-1] - rss[2] < RSS_GROWTH_LIMIT, [r >> 20 for r in rss]
    # The removed volumes' history leaves once older than the window; the kept one's stays.
    gone = f"volume_id != '{KEPT}'"
    wait_until(
        lambda: (
            _count(database, f"SELECT COUNT(*) FROM scan_results WHERE {gone}") == 0
            and _count(database, f"SELECT COUNT(*) FROM scan_jobs WHERE {gone}") == 0
            and _count(database, f"SELECT COUNT(*) FROM scan_trees WHERE {gone}") == 0
            and _count(database, "SELECT COUNT(*) FROM removed_volumes") == 0
        ),
        30,
        message="the removed volumes' rows stayed",
    )
    assert _count(database, f"SELECT COUNT(*) FROM scan_results WHERE volume_id = '{KEPT}'") >= 1
    stack["gateway"].wait_for_log("history thinned")
