"""Size history: every finished scan's figures over time, and their thinning with age.

The points are the rows of `scan_results` (one per finished scan). Points younger than
`history_days` are all kept; older ones are thinned to the last point of each UTC day (kept
for good: one row a day per volume), and finished jobs older than that lose their job row
unless their result is one of the points kept. The latest result of a volume is always the
last of its day, so it is never thinned away.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from common.messages import utc_now
from services.gateway.storage.store import Store, utc_text

log = logging.getLogger("gateway.history")

THINNING_INTERVAL_SECONDS = 3600.0

_THIN_RESULTS = """
    DELETE FROM scan_results
    WHERE scanned_at < :cutoff AND scan_id NOT IN (
        SELECT scan_id FROM (
            SELECT scan_id, ROW_NUMBER() OVER (
                PARTITION BY volume_id, substr(scanned_at, 1, 10)
                ORDER BY scanned_at DESC, scan_id DESC
            ) AS rank
            FROM scan_results WHERE scanned_at < :cutoff
        ) WHERE rank = 1
    )
"""
_DROP_OLD_JOBS = """
    DELETE FROM scan_jobs
    WHERE finished_at < :cutoff AND status IN ('completed', 'failed')
      AND scan_id NOT IN (SELECT scan_id FROM scan_results)
"""
_DROP_OLD_EVENTS = "DELETE FROM scan_events WHERE created_at < :cutoff"
# A tree no scan has replaced for the whole window belongs to a volume that is gone (live
# ones are rescanned every VV_SCAN_INTERVAL): it goes, so removed volumes' trees do not pile up.
_DROP_OLD_TREES = "DELETE FROM scan_trees WHERE scanned_at < :cutoff"
_POINT_COLUMNS = (
    "scanned_at, json_extract(result_json, '$.total_size'),"
    " json_extract(result_json, '$.disk_usage'), json_extract(result_json, '$.file_count'),"
    " json_extract(result_json, '$.method')"
)


@dataclass(frozen=True, slots=True)
class HistoryPoint:
    scanned_at: datetime
    total_size: int
    disk_usage: int
    file_count: int
    method: str


class History:
    def __init__(self, store: Store, history_days: float) -> None:
        self.store = store
        self.history_days = history_days

    async def points(
        self,
        volume_id: str,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int | None = None,
    ) -> tuple[list[HistoryPoint], int]:
        """The latest `limit` points in [since, until], oldest first, and how many matched."""
        where, params = "volume_id = ?", [volume_id]
        if since is not None:
            where += " AND scanned_at >= ?"
            params.append(utc_text(since))
        if until is not None:
            where += " AND scanned_at <= ?"
            params.append(utc_text(until))
        db = self.store.db
        async with db.execute(f"SELECT COUNT(*) FROM scan_results WHERE {where}", params) as cur:
            row = await cur.fetchone()
        total = int(row[0]) if row else 0
        query = f"SELECT {_POINT_COLUMNS} FROM scan_results WHERE {where} ORDER BY scanned_at DESC"
        if limit is not None:
            query += f" LIMIT {int(limit)}"
        async with db.execute(query, params) as cursor:
            rows = await cursor.fetchall()
        points = [
            HistoryPoint(datetime.fromisoformat(at), int(size), int(usage), int(files), method)
            for at, size, usage, files, method in reversed(list(rows))
        ]
        return points, total

    async def sizes(self, volume_id: str) -> list[tuple[datetime, int]]:
        """(scanned_at, total_size) of every stored point, oldest first."""
        points, _ = await self.points(volume_id)
        return [(point.scanned_at, point.total_size) for point in points]

    async def thin(self, now: datetime | None = None) -> tuple[int, int]:
        """Thin points older than the history window; (points removed, jobs removed)."""
        cutoff = utc_text((now or utc_now()) - timedelta(days=self.history_days))
        async with self.store.writing() as db:
            results = await db.execute(_THIN_RESULTS, {"cutoff": cutoff})
            jobs = await db.execute(_DROP_OLD_JOBS, {"cutoff": cutoff})
            # Terminal events only serve WebSocket resumes: none needs them for that long.
            await db.execute(_DROP_OLD_EVENTS, {"cutoff": cutoff})
            await db.execute(_DROP_OLD_TREES, {"cutoff": cutoff})
        removed = (max(results.rowcount, 0), max(jobs.rowcount, 0))
        if any(removed):
            log.info(
                "history thinned points_removed=%d jobs_removed=%d cutoff=%s", *removed, cutoff
            )
        return removed

    async def run_thinning(self, every_seconds: float = THINNING_INTERVAL_SECONDS) -> None:
        """Thin now, then periodically; a failure is logged and retried next time."""
        while True:
            try:
                await self.thin()
            except Exception:
                log.exception("history thinning failed")
            await asyncio.sleep(every_seconds)
