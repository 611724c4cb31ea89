"""The tree bench/scan.py measures: a seeded generator of files (empty, small, sparse, a few
larger), directories, hardlinks and symlinks, the same tree for the same seed."""

from __future__ import annotations

import os
import random
from collections import Counter
from pathlib import Path


def make_tree(root: Path, entries: int, seed: int) -> Counter[str]:
    """`entries` entries below `root`, the same tree for the same seed."""
    rng = random.Random(seed)
    made: Counter[str] = Counter()
    queue = [root]
    recent_files: list[str] = []
    while queue and made.total() < entries:
        directory = queue.pop(0)
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            for index in range(rng.randint(5, 40)):
                if made.total() >= entries:
                    break
                roll = rng.random()
                if roll < 0.08 or (not queue and index == 0):
                    os.mkdir(f"d{index}", dir_fd=fd)
                    queue.append(directory / f"d{index}")
                    made["directories"] += 1
                elif roll < 0.11 and recent_files:
                    os.link(rng.choice(recent_files), f"h{index}", dst_dir_fd=fd)
                    made["hardlinks"] += 1
                elif roll < 0.14:
                    os.symlink("../" * rng.randint(0, 3) + f"t{index}", f"s{index}", dir_fd=fd)
                    made["symlinks"] += 1
                else:
                    _write_file(fd, f"f{index}", rng)
                    made["files"] += 1
                    if len(recent_files) < 1000:
                        recent_files.append(str(directory / f"f{index}"))
                    else:
                        recent_files[rng.randrange(1000)] = str(directory / f"f{index}")
        finally:
            os.close(fd)
    return made


def _write_file(dir_fd: int, name: str, rng: random.Random) -> None:
    fd = os.open(name, os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=dir_fd)
    try:
        # Mostly sizes without blocks (sparse), so writing the tree is no disk benchmark.
        roll = rng.random()
        if roll < 0.2:
            return  # empty
        if roll < 0.3:
            os.write(fd, b"s" * rng.randint(1, 2000))
        elif roll < 0.995:
            os.ftruncate(fd, rng.randint(1, 1 << rng.randint(4, 22)))
        else:
            os.write(fd, b"L" * rng.randint(4096, 65536))
    finally:
        os.close(fd)
