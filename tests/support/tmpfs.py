"""A tmpfs of the test's own, holding volume-shaped directories: a filesystem nothing else
on the machine writes to, so a change tracker on it hears only the test."""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest


@contextlib.contextmanager
def tmpfs_volumes(where: Path, names: tuple[str, ...]) -> Iterator[Path]:
    """<tmpfs>/volumes/<name>/_data for each name, and <tmpfs>/elsewhere; yields volumes/."""
    root = where / "fs"
    root.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(root)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr!r}")
    try:
        for name in names:
            (root / "volumes" / name / "_data").mkdir(parents=True)
        (root / "elsewhere").mkdir()
        yield root / "volumes"
    finally:
        subprocess.run(["umount", str(root)], check=True)
