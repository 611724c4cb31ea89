"""A filesystem of the test's own (tmpfs, or ext4 on a loop device), holding volume-shaped
directories: nothing else on the machine writes to it, so a change tracker on it hears only
the test. ext4 gives a freed inode number out again at once, which tmpfs never does."""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest


@contextlib.contextmanager
def tmpfs_volumes(where: Path, names: tuple[str, ...], kind: str = "tmpfs") -> Iterator[Path]:
    """<fs>/volumes/<name>/_data for each name, and <fs>/elsewhere; yields volumes/."""
    root = where / "fs"
    root.mkdir()
    if kind == "ext4":
        image = where / "ext4.img"
        with open(image, "wb") as sized:
            sized.truncate(64 * 1024 * 1024)
        subprocess.run(["mkfs.ext4", "-q", "-F", str(image)], check=True, capture_output=True)
        command = ["mount", "-o", "loop", str(image), str(root)]
    else:
        command = ["mount", "-t", "tmpfs", "tmpfs", str(root)]
    mounted = subprocess.run(command, capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a {kind} here: {mounted.stderr!r}")
    try:
        for name in names:
            (root / "volumes" / name / "_data").mkdir(parents=True)
        (root / "elsewhere").mkdir()
        yield root / "volumes"
    finally:
        subprocess.run(["umount", str(root)], check=True)
