"""Checks of a kept directory tree against the files themselves and against du."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from common.messages import ScanTree, TreeNode
from common.names import unescape_path
from services.scanner.walk import WalkOutcome


def node_paths(tree: ScanTree) -> dict[bytes, TreeNode]:
    """Every kept directory by its raw path relative to the root (b"" for the root)."""
    paths: list[bytes] = []
    found: dict[bytes, TreeNode] = {}
    for node in tree.nodes:
        if node.parent < 0:
            path = b""
        else:
            parent = paths[node.parent]
            path = (parent + b"/" if parent else b"") + unescape_path(node.name)
        paths.append(path)
        found[path] = node
    return found


def assert_root_is_the_totals(root: TreeNode, outcome: WalkOutcome) -> None:
    """The root node's cumulative figures are the walk's totals."""
    assert (root.apparent, root.disk, root.files, root.dirs) == (
        outcome.total_size,
        outcome.disk_usage,
        outcome.file_count,
        outcome.directory_count,
    )


def assert_levels_add_up(tree: ScanTree) -> None:
    """Each node's figures are its own, plus its pruned ('other') subdirectories, plus its
    kept children's."""
    children: dict[int, list[TreeNode]] = {}
    for node in tree.nodes:
        children.setdefault(node.parent, []).append(node)
    for index, node in enumerate(tree.nodes):
        kids = children.get(index, [])
        for figure in ("apparent", "disk", "files"):
            parts = getattr(node, f"own_{figure}") + getattr(node, f"other_{figure}")
            parts += sum(getattr(kid, figure) for kid in kids)
            assert getattr(node, figure) == parts, (node.name, figure)
        assert node.dirs == node.other_dirs + sum(1 + kid.dirs for kid in kids), node.name


def du_per_directory(root: Path) -> dict[bytes, int]:
    """`du -B1 -x` of every directory, by raw path relative to the root."""
    out = subprocess.run(
        ["du", "-B1", "-x", os.fsencode(root)], check=True, capture_output=True
    ).stdout
    prefix = os.fsencode(root)
    sizes: dict[bytes, int] = {}
    for line in out.splitlines():
        size, _, path = line.partition(b"\t")
        sizes[path[len(prefix) :].lstrip(b"/")] = int(size)
    return sizes


def apparent_per_directory(root: Path) -> dict[bytes, int]:
    """Apparent bytes of the non-directories at or below each directory (a Python sum over
    the files; a hard-linked inode once, where os.walk meets it first)."""
    seen: set[int] = set()
    own: dict[bytes, int] = {}
    for directory, dirnames, filenames in os.walk(os.fsencode(root)):
        relative = directory[len(os.fsencode(root)) :].lstrip(b"/")
        total = 0
        for name in filenames + [d for d in dirnames if os.path.islink(os.path.join(directory, d))]:
            info = os.lstat(os.path.join(directory, name))
            if info.st_nlink > 1:
                if info.st_ino in seen:
                    continue
                seen.add(info.st_ino)
            total += info.st_size
        own[relative] = total
    cumulative = dict.fromkeys(own, 0)
    for path, size in own.items():
        while True:
            cumulative[path] += size
            if not path:
                break
            path = path.rpartition(b"/")[0]
    return cumulative
