"""Size history: every finished scan's figures over time, and their thinning with age.

The points are the rows of `scan_results` (one per finished scan, and the live tracker's
points, services/gateway/live/points.py). Points younger than `history_days` are all kept;
older ones are thinned to the last point of each UTC day, scans' and live points apart
(kept while the volume exists: a row or two a day per volume), and finished jobs older
than that lose their job row unless their result is one of the points kept. The latest
result of a volume is always the last of its day and kind, so it is never thinned away. A
removed volume keeps its history for the window too, then all of it goes
(storage/removals.py).

Each pass looks only at rows that crossed the cutoff since the pass before (from the start
of that cutoff's UTC day, so a day's last point is chosen among all of that day's rows),
not at every old row again.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from common.messages import utc_now
from services.gateway.storage.removals import PURGE_REMOVED, note_membership
from services.gateway.storage.store import Store, StoreNotWritable, utc_text

log = logging.getLogger("gateway.history")

_THIN_RESULTS = """
    DELETE FROM scan_results
    WHERE scanned_at < :cutoff AND scanned_at >= :since AND scan_id NOT IN (
        SELECT scan_id FROM (
            SELECT scan_id, ROW_NUMBER() OVER (
                PARTITION BY volume_id, substr(scanned_at, 1, 10), scan_id LIKE 'live-%'
                ORDER BY scanned_at DESC, scan_id DESC
            ) AS rank
            FROM scan_results WHERE scanned_at < :cutoff AND scanned_at >= :since
        ) WHERE rank = 1
    )
"""
_DROP_OLD_JOBS = """
    DELETE FROM scan_jobs
    WHERE finished_at < :cutoff AND finished_at >= :since
      AND status IN ('completed', 'failed')
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
        self._since = ""  # rows before this were thinned by an earlier pass ("": none yet)
        self._writes: set[asyncio.Task[None]] = set()

    def membership_changed(self, added: frozenset[str], removed: frozenset[str]) -> None:
        """The catalog's membership listener: note removals and returns in the store."""
        task = asyncio.get_running_loop().create_task(self._note(added, removed))
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    async def _note(self, added: frozenset[str], removed: frozenset[str]) -> None:
        try:
            async with self.store.writing() as db:
                await note_membership(db, sorted(removed), sorted(added), utc_text(utc_now()))
        except StoreNotWritable as error:
            # Not lost for good: the next start sees results of volumes the engine lacks.
            log.warning("volume removals not stored removed=%d error=%s", len(removed), error)

    async def close(self) -> None:
        for task in list(self._writes):
            task.cancel()
        await asyncio.gather(*self._writes, return_exceptions=True)

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
        cutoff_at = (now or utc_now()) - timedelta(days=self.history_days)
        cutoff = utc_text(cutoff_at)
        window = {"cutoff": cutoff, "since": self._since}
        async with self.store.writing() as db:
            results = await db.execute(_THIN_RESULTS, window)
            jobs = await db.execute(_DROP_OLD_JOBS, window)
            # Terminal events only serve WebSocket resumes: none needs them for that long.
            await db.execute(_DROP_OLD_EVENTS, {"cutoff": cutoff})
            await db.execute(_DROP_OLD_TREES, {"cutoff": cutoff})
            purged = [await db.execute(sql, {"cutoff": cutoff}) for sql in PURGE_REMOVED]
        self._since = utc_text(cutoff_at.replace(hour=0, minute=0, second=0, microsecond=0))
        removed = (
            max(results.rowcount, 0) + max(purged[0].rowcount, 0),
            max(jobs.rowcount, 0) + max(purged[2].rowcount, 0),
        )
        if any(removed):
            log.info(
                "history thinned points_removed=%d jobs_removed=%d cutoff=%s", *removed, cutoff
            )
        return removed

    async def run_thinning(self, every_seconds: float) -> None:
        """Thin now, then periodically; a failure is logged and retried next time."""
        while True:
            try:
                await self.thin()
            except Exception:
                log.exception("history thinning failed")
            await asyncio.sleep(every_seconds)
