"""The directory trees of native scans in SQLite (`scan_trees`, created with the rest of the
schema in store.py): the latest and the one before for each volume, written in the same
transaction as the scan's result."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import aiosqlite

from common.messages import ScanTree

# The latest tree and the previous one, for "what grew".
TREES_PER_VOLUME = 2


@dataclass(frozen=True, slots=True)
class StoredTree:
    scan_id: str
    scanned_at: datetime
    tree: ScanTree


async def keep(
    db: aiosqlite.Connection, scan_id: str, volume_id: str, scanned_at: datetime, tree: ScanTree
) -> None:
    """Store a scan's tree and forget the volume's older ones (inside the caller's
    transaction)."""
    await db.execute(
        "INSERT OR REPLACE INTO scan_trees (scan_id, volume_id, scanned_at, tree_json)"
        " VALUES (?, ?, ?, ?)",
        (scan_id, volume_id, scanned_at.astimezone(UTC).isoformat(), tree.model_dump_json()),
    )
    await db.execute(
        "DELETE FROM scan_trees WHERE volume_id = ? AND scan_id NOT IN (SELECT scan_id"
        " FROM scan_trees WHERE volume_id = ? ORDER BY scanned_at DESC LIMIT ?)",
        (volume_id, volume_id, TREES_PER_VOLUME),
    )


async def load(db: aiosqlite.Connection, volume_id: str) -> list[StoredTree]:
    async with db.execute(
        "SELECT scan_id, scanned_at, tree_json FROM scan_trees WHERE volume_id = ?"
        " ORDER BY scanned_at DESC LIMIT ?",
        (volume_id, TREES_PER_VOLUME),
    ) as cursor:
        rows = await cursor.fetchall()
    return [
        StoredTree(scan_id, datetime.fromisoformat(at), ScanTree.model_validate_json(text))
        for scan_id, at, text in rows
    ]


async def scan_ids(db: aiosqlite.Connection, volume_id: str) -> list[str]:
    async with db.execute(
        "SELECT scan_id FROM scan_trees WHERE volume_id = ? ORDER BY scanned_at DESC LIMIT ?",
        (volume_id, TREES_PER_VOLUME),
    ) as cursor:
        return [row[0] for row in await cursor.fetchall()]
