"""Volumes the engine no longer has (`removed_volumes`): when each went, so that its stored
history leaves once it is older than the history window, as every other point does.

A volume that comes back under the same name is taken off the list. The list is what the
gateway saw: a volume removed while the gateway was down is noticed at its next start
(stored results of a volume the first state does not hold).
"""

from __future__ import annotations

from collections.abc import Iterable

import aiosqlite

# Everything stored of the volumes removed before :cutoff, then their entries.
PURGE_REMOVED = (
    "DELETE FROM scan_results WHERE volume_id IN"
    " (SELECT volume_id FROM removed_volumes WHERE removed_at < :cutoff)",
    "DELETE FROM scan_trees WHERE volume_id IN"
    " (SELECT volume_id FROM removed_volumes WHERE removed_at < :cutoff)",
    "DELETE FROM scan_jobs WHERE status IN ('completed', 'failed') AND volume_id IN"
    " (SELECT volume_id FROM removed_volumes WHERE removed_at < :cutoff)",
    "DELETE FROM removed_volumes WHERE removed_at < :cutoff",
)


async def note_membership(
    db: aiosqlite.Connection, removed: Iterable[str], returned: Iterable[str], at: str
) -> None:
    """Record removals (the first time counts) and returns, inside the caller's transaction."""
    await db.executemany(
        "INSERT INTO removed_volumes (volume_id, removed_at) VALUES (?, ?)"
        " ON CONFLICT (volume_id) DO NOTHING",
        [(name, at) for name in removed],
    )
    await db.executemany(
        "DELETE FROM removed_volumes WHERE volume_id = ?", [(name,) for name in returned]
    )
