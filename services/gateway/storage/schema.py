"""The database's schema, versioned: `PRAGMA user_version` says which numbered migrations a
file has had, and every start applies the missing ones in order, each in one transaction
with its version, so a database from any earlier version is upgraded in place.

Version 0 is a database from before the schema had a version (or a new, empty file): the
first migration is written with `IF NOT EXISTS` so it applies to both. A database from a
newer version than this code knows is refused (SchemaTooNew) rather than misread.

Every start also repairs what an older version could leave behind: a job still `queued` or
`running` although its terminal event was written (a requeue racing a finish resurrected
it). It takes the status its event says, so it is never started, finished or announced
again.
"""

from __future__ import annotations

import logging

import aiosqlite

log = logging.getLogger("gateway.store")

MIGRATIONS: tuple[str, ...] = (
    # 1: jobs, results and terminal events (the schema before versions)
    """
    CREATE TABLE IF NOT EXISTS scan_jobs (
        scan_id       TEXT PRIMARY KEY,
        volume_id     TEXT NOT NULL,
        method        TEXT NOT NULL,
        status        TEXT NOT NULL,
        attempts      INTEGER NOT NULL DEFAULT 0,
        requested_at  TEXT NOT NULL,
        started_at    TEXT,
        finished_at   TEXT,
        error_code    TEXT,
        error_message TEXT
    );
    CREATE INDEX IF NOT EXISTS scan_jobs_open ON scan_jobs (status)
        WHERE status IN ('queued', 'running');
    CREATE TABLE IF NOT EXISTS scan_results (
        scan_id     TEXT PRIMARY KEY,
        volume_id   TEXT NOT NULL,
        scanned_at  TEXT NOT NULL,
        result_json TEXT NOT NULL
    );
    CREATE INDEX IF NOT EXISTS scan_results_volume ON scan_results (volume_id, scanned_at);
    CREATE TABLE IF NOT EXISTS scan_events (
        event_id   INTEGER PRIMARY KEY AUTOINCREMENT,
        scan_id    TEXT NOT NULL UNIQUE,
        volume_id  TEXT NOT NULL,
        type       TEXT NOT NULL,
        data_json  TEXT NOT NULL,
        created_at TEXT NOT NULL
    );
    CREATE INDEX IF NOT EXISTS scan_results_time ON scan_results (scanned_at);
    CREATE INDEX IF NOT EXISTS scan_jobs_finished ON scan_jobs (finished_at)
        WHERE finished_at IS NOT NULL;
    """,
    # 2: the directory trees of native scans (storage/trees.py)
    """
    CREATE TABLE scan_trees (
        scan_id    TEXT PRIMARY KEY,
        volume_id  TEXT NOT NULL,
        scanned_at TEXT NOT NULL,
        tree_json  TEXT NOT NULL
    );
    CREATE INDEX scan_trees_volume ON scan_trees (volume_id, scanned_at);
    """,
    # 3: browser sessions logged out before they expire (http/session.py)
    """
    CREATE TABLE revoked_sessions (
        nonce      TEXT PRIMARY KEY,
        expires_at REAL NOT NULL
    );
    """,
    # 4: volumes the engine no longer has, so their history goes once it is old (removals.py)
    """
    CREATE TABLE removed_volumes (
        volume_id  TEXT PRIMARY KEY,
        removed_at TEXT NOT NULL
    );
    CREATE INDEX removed_volumes_time ON removed_volumes (removed_at);
    """,
    # 5: which worker ran a job (on a gateway of many hosts, which host's pool)
    """
    ALTER TABLE scan_jobs ADD COLUMN worker_id TEXT;
    """,
)
SCHEMA_VERSION = len(MIGRATIONS)

_REPAIR_ENDED_JOBS = """
    UPDATE scan_jobs SET
        status = CASE (SELECT type FROM scan_events AS e WHERE e.scan_id = scan_jobs.scan_id)
            WHEN 'scan_complete' THEN 'completed' ELSE 'failed' END,
        finished_at = COALESCE(
            finished_at,
            (SELECT created_at FROM scan_events AS e WHERE e.scan_id = scan_jobs.scan_id)
        )
    WHERE status IN ('queued', 'running') AND scan_id IN (SELECT scan_id FROM scan_events)
"""


class SchemaTooNew(RuntimeError):
    """The database was written by a newer version: this one must not touch it."""


def _statements(script: str) -> list[str]:
    return [part.strip() for part in script.split(";") if part.strip()]


async def migrate(db: aiosqlite.Connection) -> tuple[int, int]:
    """Bring the schema to SCHEMA_VERSION and repair ended jobs; (version found, repaired)."""
    async with db.execute("PRAGMA user_version") as cursor:
        row = await cursor.fetchone()
    found = int(row[0]) if row else 0
    if found > SCHEMA_VERSION:
        raise SchemaTooNew(
            f"the database has schema version {found}; this gateway knows up to "
            f"{SCHEMA_VERSION}: run a newer gateway, or move the database aside"
        )
    for version in range(found + 1, SCHEMA_VERSION + 1):
        # One transaction per migration, its version included (executescript would commit
        # on its own, so the statements go one by one).
        await db.execute("BEGIN IMMEDIATE")
        try:
            for statement in _statements(MIGRATIONS[version - 1]):
                await db.execute(statement)
            await db.execute(f"PRAGMA user_version = {version}")
        except BaseException:
            await db.rollback()
            raise
        await db.commit()
        log.info("database schema migrated version=%d", version)
    cursor = await db.execute(_REPAIR_ENDED_JOBS)
    repaired = max(cursor.rowcount, 0)
    await db.commit()
    if repaired:
        log.warning("repaired jobs that had already ended jobs=%d", repaired)
    return found, repaired
