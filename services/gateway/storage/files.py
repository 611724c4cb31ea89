"""The database file itself: created owner-only, told apart when damaged (then moved aside)
from merely unusable for now (locked, full, read-only: then the gateway does not start)."""

from __future__ import annotations

import os
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

_COMPANIONS = ("", "-wal", "-shm", "-journal")


class StoreUnavailable(RuntimeError):
    """The database cannot be opened at all (its path is a directory, not writable, locked,
    or holds a newer schema): the gateway must not start."""


class QuickCheckFailed(sqlite3.DatabaseError):
    """PRAGMA quick_check found damage."""


def is_corrupt(error: sqlite3.DatabaseError) -> bool:
    """Damage (SQLITE_CORRUPT, SQLITE_NOTADB, a failed quick_check), as opposed to a file
    that is fine but cannot be used now (locked, full, read-only)."""
    return isinstance(error, QuickCheckFailed) or getattr(error, "sqlite_errorcode", None) in (
        11,  # SQLITE_CORRUPT
        26,  # SQLITE_NOTADB
    )


def database_files(path: Path) -> list[Path]:
    """The database and the journal, WAL and shared-memory files beside it that exist."""
    candidates = [path.with_name(path.name + suffix) for suffix in _COMPANIONS]
    return [candidate for candidate in candidates if candidate.exists()]


def prepare_files(path: Path) -> None:
    """Owner only. SQLite gives its journal, WAL and shared-memory files the database file's
    mode, so creating that 0600 (and narrowing one an older version made 0644) covers them
    all; raises StoreUnavailable."""
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
        for existing in database_files(path):
            existing.chmod(0o600)
    except OSError as error:
        raise StoreUnavailable(f"cannot open the database {path}: {error}") from None


def move_aside(path: Path) -> Path:
    """Rename a damaged database `<name>.corrupt-<UTC time>` (its WAL and shared memory
    beside it), so a new one can be made and the old one examined."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    target = path.with_name(f"{path.name}.corrupt-{stamp}")
    for existing in database_files(path):
        existing.rename(target.with_name(target.name + existing.name[len(path.name) :]))
    return target
