"""SQLite persistence of scan jobs and results (aiosqlite; the gateway is the only writer).

WAL journal and synchronous=NORMAL: a commit survives a killed process; every state change
of a job is committed before anyone is told about it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sqlite3
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiosqlite

from common.messages import ScanFailure, ScanMethod, ScanResultData, ScanTree
from services.gateway.storage import trees
from services.gateway.storage.files import (
    QuickCheckFailed,
    StoreUnavailable,
    is_corrupt,
    move_aside,
    prepare_files,
)
from services.gateway.storage.schema import SchemaTooNew, migrate
from services.gateway.storage.trees import StoredTree

# Terminal events kept for clients that resume a WebSocket after a reconnect.
EVENT_REPLAY_LIMIT = 10_000
EVENT_TRIM_EVERY = 100  # events beyond the replay window are deleted this often
LIVE_POINT_PREFIX = "live-"  # the scan_id of a live history point (no job behind it)


@dataclass(frozen=True, slots=True)
class TerminalEvent:
    """A scan's one `scan_complete` or `scan_error`, numbered in the order it was announced."""

    event_id: int
    scan_id: str
    volume_id: str
    type: str
    data: dict[str, Any]


@dataclass(slots=True)
class JobRow:
    scan_id: str
    volume_id: str
    method: ScanMethod
    status: str
    attempts: int
    requested_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    failure: ScanFailure | None
    result: ScanResultData | None
    worker_id: str | None = None  # the worker it was last handed to


def utc_text(moment: datetime) -> str:
    """How times are stored: ISO 8601 in UTC, so text order is time order and the first
    ten characters are the UTC day."""
    return moment.astimezone(UTC).isoformat()


def _time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


log = logging.getLogger("gateway.store")


class StoreNotWritable(RuntimeError):
    """A write was not stored, for a reason that passes (nothing is wrong with the data):
    reads still work, and writes are tried again by whoever needs them."""


class StorageFull(StoreNotWritable):
    """The disk is full or read-only (or failing)."""


class StorageBusy(StoreNotWritable):
    """Another process holds the database's write lock past the busy timeout."""


# SQLite's result codes (sqlite3.h): the file system will not take it; someone else has it.
_NO_ROOM_CODES = frozenset({13, 8, 10})  # SQLITE_FULL, SQLITE_READONLY, SQLITE_IOERR
_BUSY_CODES = frozenset({5, 6})  # SQLITE_BUSY, SQLITE_LOCKED


class Store:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._db: aiosqlite.Connection | None = None
        # Set when a corrupt or unreadable database was moved aside at start (for health).
        self.moved_aside: Path | None = None
        # Why the last write failed, until one succeeds again (for health).
        self.write_problem: str | None = None
        # One connection serves every coroutine: a transaction must not take in (or have
        # rolled back) another's statements, so writers go one at a time.
        self._write_lock = asyncio.Lock()

    @contextlib.asynccontextmanager
    async def writing(self) -> AsyncIterator[aiosqlite.Connection]:
        """One write transaction: committed on success, rolled back on error; a disk that
        takes nothing more is StorageFull."""
        async with self._write_lock:
            try:
                yield self.db
                await self.db.commit()
            except sqlite3.Error as error:
                with contextlib.suppress(sqlite3.Error):
                    await self.db.rollback()
                code = getattr(error, "sqlite_errorcode", None)
                if code not in _NO_ROOM_CODES and code not in _BUSY_CODES:
                    raise
                if self.write_problem is None:
                    log.error("database write failed path=%s error=%s", self.path, error)
                self.write_problem = str(error)
                kind = StorageBusy if code in _BUSY_CODES else StorageFull
                raise kind(f"the database cannot be written now: {error}") from None
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    await self.db.rollback()
                raise
            if self.write_problem is not None:
                log.info("database writable again path=%s", self.path)
                self.write_problem = None

    @property
    def is_open(self) -> bool:
        return self._db is not None

    @property
    def db(self) -> aiosqlite.Connection:
        if self._db is None:
            raise RuntimeError("store is not open")
        return self._db

    async def open(self) -> None:
        """Open (creating, upgrading or, when corrupt, replacing) the database; raises
        StoreUnavailable when no database can be had at that path."""
        prepare_files(self.path)
        try:
            self._db = await self._connect()
        except sqlite3.DatabaseError as error:
            await self.close()
            if not is_corrupt(error):  # locked, full, read-only, failing: not ours to move
                raise StoreUnavailable(f"cannot open the database {self.path}: {error}") from None
            self.moved_aside = move_aside(self.path)
            log.error(
                "database unreadable, moved aside path=%s moved_to=%s error=%s",
                self.path,
                self.moved_aside,
                error,
            )
            prepare_files(self.path)  # the new file is owner-only too
            try:
                self._db = await self._connect()
            except sqlite3.Error as again:
                await self.close()
                raise StoreUnavailable(f"cannot create a new database: {again}") from None
        except SchemaTooNew as error:
            await self.close()
            raise StoreUnavailable(str(error)) from None

    async def _connect(self) -> aiosqlite.Connection:
        db = await aiosqlite.connect(self.path)
        self._db = db  # so that close() releases it if anything below fails
        await db.execute("PRAGMA journal_mode=WAL")
        await db.execute("PRAGMA synchronous=NORMAL")
        async with db.execute("PRAGMA quick_check") as cursor:
            verdict = [row[0] for row in await cursor.fetchall()]
        if verdict != ["ok"]:
            raise QuickCheckFailed(f"quick_check: {'; '.join(verdict[:3])}")
        await migrate(db)
        return db

    async def close(self) -> None:
        if self._db is not None:
            with contextlib.suppress(sqlite3.Error):
                await self._db.close()
            self._db = None

    async def ping(self) -> bool:
        try:
            async with self.db.execute("SELECT 1") as cursor:
                return await cursor.fetchone() is not None
        except Exception:
            return False

    # --- results ------------------------------------------------------------------

    async def latest_results(self) -> list[ScanResultData]:
        """Each volume's latest scan result, and its latest live point (LIVE_POINT_PREFIX)."""
        # One pass over the table (grouped), not a correlated lookup per row.
        live = f"(scan_id LIKE '{LIVE_POINT_PREFIX}%')"
        query = f"""
            SELECT r.result_json FROM scan_results AS r JOIN (
                SELECT volume_id, {live} AS live, MAX(scanned_at) AS latest
                FROM scan_results GROUP BY volume_id, live
            ) AS m ON r.volume_id = m.volume_id AND r.scanned_at = m.latest
                AND (r.scan_id LIKE '{LIVE_POINT_PREFIX}%') = m.live
        """
        async with self.db.execute(query) as cursor:
            rows = await cursor.fetchall()
        return [ScanResultData.model_validate_json(row[0]) for row in rows]

    async def add_live_points(self, results: list[ScanResultData]) -> None:
        """Points of the live figures' history (result rows without a job), in one
        transaction: a tracker's first reads of thousands of volumes are one write."""
        async with self.writing() as db:
            await db.executemany(
                "INSERT INTO scan_results (scan_id, volume_id, scanned_at, result_json)"
                " VALUES (?, ?, ?, ?)",
                [
                    (
                        f"{LIVE_POINT_PREFIX}{uuid.uuid4().hex}",
                        result.volume_id,
                        utc_text(result.scanned_at),
                        result.model_dump_json(),
                    )
                    for result in results
                ],
            )

    async def count_results(self) -> int:
        async with self.db.execute("SELECT COUNT(*) FROM scan_results") as cursor:
            row = await cursor.fetchone()
        return int(row[0]) if row else 0

    # --- jobs ---------------------------------------------------------------------

    async def insert_job(self, job: JobRow) -> None:
        async with self.writing() as db:
            await db.execute(
                "INSERT INTO scan_jobs (scan_id, volume_id, method, status, attempts,"
                " requested_at) VALUES (?, ?, ?, ?, ?, ?)",
                (
                    job.scan_id,
                    job.volume_id,
                    job.method,
                    job.status,
                    job.attempts,
                    job.requested_at.isoformat(),
                ),
            )

    # Every status change is guarded: only an open job (queued or running) moves, so a job
    # that ended can never be queued or started again, whatever races with its finish.

    async def mark_running(
        self, scan_id: str, started_at: datetime, attempts: int, worker_id: str | None = None
    ) -> bool:
        """queued|running -> running; False when the job had already ended."""
        async with self.writing() as db:
            cursor = await db.execute(
                "UPDATE scan_jobs SET status = 'running', started_at = ?, attempts = ?,"
                " worker_id = ? WHERE scan_id = ? AND status IN ('queued', 'running')",
                (started_at.isoformat(), attempts, worker_id, scan_id),
            )
            return cursor.rowcount == 1

    async def mark_queued(self, scan_id: str, attempts: int) -> bool:
        """queued|running -> queued; False when the job had already ended."""
        async with self.writing() as db:
            cursor = await db.execute(
                "UPDATE scan_jobs SET status = 'queued', attempts = ?"
                " WHERE scan_id = ? AND status IN ('queued', 'running')",
                (attempts, scan_id),
            )
            return cursor.rowcount == 1

    async def finish_job(
        self,
        scan_id: str,
        finished_at: datetime,
        result: ScanResultData | None,
        failure: ScanFailure | None,
        event: tuple[str, str, dict[str, Any]],
        tree: ScanTree | None = None,
    ) -> int | None:
        """Record the outcome, its tree and its terminal event (volume_id, type, data) in one
        transaction. Returns the event id, or None when the job had already ended."""
        status = "completed" if result is not None else "failed"
        async with self.writing() as db:
            cursor = await db.execute(
                "UPDATE scan_jobs SET status = ?, finished_at = ?, error_code = ?,"
                " error_message = ? WHERE scan_id = ? AND status IN ('queued', 'running')",
                (
                    status,
                    finished_at.isoformat(),
                    failure.code if failure else None,
                    failure.message if failure else None,
                    scan_id,
                ),
            )
            if cursor.rowcount != 1:
                return None  # nothing written: the commit is a no-op
            if result is not None:
                await db.execute(
                    "INSERT OR REPLACE INTO scan_results"
                    " (scan_id, volume_id, scanned_at, result_json) VALUES (?, ?, ?, ?)",
                    (
                        scan_id,
                        result.volume_id,
                        utc_text(result.scanned_at),
                        result.model_dump_json(),
                    ),
                )
                if tree is not None:
                    await trees.keep(db, scan_id, result.volume_id, result.scanned_at, tree)
            volume_id, event_type, data = event
            # A terminal event is written once: an older version may have left one behind.
            cursor = await db.execute(
                "INSERT INTO scan_events (scan_id, volume_id, type, data_json, created_at)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT (scan_id) DO NOTHING",
                (scan_id, volume_id, event_type, json.dumps(data), utc_text(finished_at)),
            )
            if cursor.rowcount != 1:
                return None
            event_id = cursor.lastrowid
            if event_id is not None and event_id % EVENT_TRIM_EVERY == 0:
                # Events serve WebSocket resumes only: keep the replay window, no more.
                await db.execute(
                    "DELETE FROM scan_events WHERE event_id <= ?", (event_id - EVENT_REPLAY_LIMIT,)
                )
            return event_id

    # --- browser sessions ---------------------------------------------------------------

    async def revoked_sessions(self, now: float) -> dict[str, float]:
        """Logged-out sessions not yet expired (nonce -> expiry, Unix seconds)."""
        async with self.db.execute(
            "SELECT nonce, expires_at FROM revoked_sessions WHERE expires_at > ?", (now,)
        ) as cursor:
            return {nonce: float(expires) for nonce, expires in await cursor.fetchall()}

    async def revoke_session(self, nonce: str, expires_at: float, now: float) -> None:
        async with self.writing() as db:
            await db.execute("DELETE FROM revoked_sessions WHERE expires_at <= ?", (now,))
            await db.execute(
                "INSERT OR REPLACE INTO revoked_sessions (nonce, expires_at) VALUES (?, ?)",
                (nonce, expires_at),
            )

    async def trees(self, volume_id: str) -> list[StoredTree]:
        """The volume's kept trees, the latest first."""
        return await trees.load(self.db, volume_id)

    async def tree_ids(self, volume_id: str) -> list[str]:
        """The scan ids of the volume's kept trees, the latest first (no documents read)."""
        return await trees.scan_ids(self.db, volume_id)

    async def last_event_id(self) -> int:
        async with self.db.execute("SELECT COALESCE(MAX(event_id), 0) FROM scan_events") as cur:
            row = await cur.fetchone()
        return int(row[0]) if row else 0

    async def events_between(self, after: int, upto: int) -> list[TerminalEvent]:
        """Terminal events with after < event_id <= upto, oldest first, the newest at most."""
        query = (
            "SELECT event_id, scan_id, volume_id, type, data_json FROM scan_events"
            " WHERE event_id > ? AND event_id <= ? ORDER BY event_id DESC LIMIT ?"
        )
        async with self.db.execute(query, (after, upto, EVENT_REPLAY_LIMIT)) as cursor:
            rows = await cursor.fetchall()
        return [
            TerminalEvent(row[0], row[1], row[2], row[3], json.loads(row[4]))
            for row in reversed(list(rows))
        ]

    async def get_job(self, scan_id: str) -> JobRow | None:
        rows = await self._jobs("WHERE j.scan_id = ?", (scan_id,))
        return rows[0] if rows else None

    async def open_jobs(self) -> list[JobRow]:
        return await self._jobs(
            "WHERE j.status IN ('queued', 'running') ORDER BY j.requested_at", ()
        )

    async def _jobs(self, where: str, params: tuple[str, ...]) -> list[JobRow]:
        query = (
            "SELECT j.scan_id, j.volume_id, j.method, j.status, j.attempts, j.requested_at,"
            " j.started_at, j.finished_at, j.error_code, j.error_message, r.result_json,"
            " j.worker_id"
            " FROM scan_jobs AS j LEFT JOIN scan_results AS r ON r.scan_id = j.scan_id " + where
        )
        async with self.db.execute(query, params) as cursor:
            rows = await cursor.fetchall()
        return [
            JobRow(
                scan_id=row[0],
                volume_id=row[1],
                method=row[2],
                status=row[3],
                attempts=row[4],
                requested_at=datetime.fromisoformat(row[5]),
                started_at=_time(row[6]),
                finished_at=_time(row[7]),
                failure=ScanFailure(code=row[8], message=row[9] or "") if row[8] else None,
                result=ScanResultData.model_validate_json(row[10]) if row[10] else None,
                worker_id=row[11],
            )
            for row in rows
        ]
