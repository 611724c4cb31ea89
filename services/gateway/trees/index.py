"""One stored tree, indexed for browsing: directories by path, children by parent.

Paths are those of the API: `/` for the volume's root, then names escaped as
common/names.py says, joined with `/`. A path asked for is checked (it must start at `/`,
have no `.` or `..` component and no NUL byte) and made canonical (each component unescaped
and escaped again), so an escaped byte given back finds the same directory.
"""

from __future__ import annotations

from typing import Any, Literal

from common.messages import ScanTree, TreeNode
from common.names import escape_name, unescape_path
from services.gateway.trees.errors import InvalidTreePath, TreePathNotFound

TreeSort = Literal["disk_usage", "apparent_size", "files", "dirs", "name"]
_SORT_KEYS: dict[str, Any] = {
    "disk_usage": lambda node: (-node.disk, node.name),
    "apparent_size": lambda node: (-node.apparent, node.name),
    "files": lambda node: (-node.files, node.name),
    "dirs": lambda node: (-node.dirs, node.name),
    "name": lambda node: (node.name,),
}


def canonical_path(text: str) -> str:
    """The API form of a path given by a client; raises InvalidTreePath."""
    if not text.startswith("/"):
        raise InvalidTreePath("path must start at the volume's root, '/'")
    if "\x00" in text:
        raise InvalidTreePath("path must not contain a NUL byte")
    try:
        raw = [unescape_path(part) for part in text.split("/") if part]
    except UnicodeEncodeError:
        raise InvalidTreePath("path is not valid text") from None
    # Checked once unescaped, so "%2E%2E" is '..' too.
    if any(part in (b".", b"..") for part in raw):
        raise InvalidTreePath("path must not contain '.' or '..'")
    if any(b"/" in part or b"\x00" in part for part in raw):
        raise InvalidTreePath("an escaped '/' or NUL byte cannot be part of a name")
    names = [escape_name(part) for part in raw]
    return "/" + "/".join(names)


class TreeIndex:
    def __init__(self, tree: ScanTree) -> None:
        self.tree = tree
        self.nodes = tree.nodes
        self.paths: list[str] = []
        self.children: list[list[int]] = [[] for _ in self.nodes]
        self.by_path: dict[str, int] = {}
        for index, node in enumerate(self.nodes):
            if node.parent < 0:
                path = "/"
            else:
                parent_path = self.paths[node.parent]
                path = f"{parent_path.rstrip('/')}/{node.name}"
                self.children[node.parent].append(index)
            self.paths.append(path)
            self.by_path[path] = index
        self.total_disk = self.nodes[0].disk if self.nodes else 0

    def find(self, path: str) -> int:
        index = self.by_path.get(canonical_path(path))
        if index is None:
            raise TreePathNotFound(f"no directory {path!r} in the stored tree")
        return index

    def share(self, disk: int) -> float:
        return disk / self.total_disk if self.total_disk else 0.0

    def describe(self, index: int, depth: int, limit: int, sort: TreeSort) -> dict[str, Any]:
        """The directory and `depth` levels of its children, each level largest first."""
        node = self.nodes[index]
        body = self._figures(node, self.paths[index])
        body["own"] = {
            "apparent": node.own_apparent,
            "disk": node.own_disk,
            "files": node.own_files,
        }
        body["other"] = (
            {
                "apparent": node.other_apparent,
                "disk": node.other_disk,
                "files": node.other_files,
                "dirs": node.other_dirs,
                "share": self.share(node.other_disk),
            }
            if node.other_dirs
            else None
        )
        kids = sorted(self.children[index], key=lambda i: _SORT_KEYS[sort](self.nodes[i]))
        body["children_total"] = len(kids)
        if depth <= 0:
            body["children"] = None  # not expanded: ask for this path
            return body
        body["children"] = [self.describe(child, depth - 1, limit, sort) for child in kids[:limit]]
        return body

    def _figures(self, node: TreeNode, path: str) -> dict[str, Any]:
        return {
            "name": node.name,
            "path": path,
            "apparent": node.apparent,
            "disk": node.disk,
            "files": node.files,
            "dirs": node.dirs,
            "share": self.share(node.disk),
            "pruned": node.other_dirs > 0,
        }

    def disk_by_path(self) -> dict[str, int]:
        return {path: self.nodes[index].disk for path, index in self.by_path.items()}


def changes(before: TreeIndex, after: TreeIndex, limit: int) -> list[dict[str, Any]]:
    """Directories whose disk usage changed most between two trees, largest change first. A
    directory absent from one tree (new, removed, or too small to be kept there) counts as
    0 in it, and its `before` or `after` is null."""
    old, new = before.disk_by_path(), after.disk_by_path()
    moved: list[tuple[int, str, int | None, int | None]] = []
    for path in old.keys() | new.keys():
        was, now = old.get(path), new.get(path)
        delta = (now or 0) - (was or 0)
        if delta:
            moved.append((delta, path, was, now))
    moved.sort(key=lambda row: (-abs(row[0]), row[1]))
    return [
        {"path": path, "before": was, "after": now, "delta": delta}
        for delta, path, was, now in moved[:limit]
    ]
