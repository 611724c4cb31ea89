"""The directory tree a native walk keeps beside its totals, and how it is pruned.

While walking, every directory gets a record: its parent, its name, its depth and its own
figures (the apparent bytes and disk blocks of the files directly in it, their count, and
its own blocks). When a directory is finished (or given up: unreadable, a cycle) its
figures are folded into its parent's, so each record ends cumulative: the directory and
everything below it, which is what `du -B1 -x` prints for it. Hard links follow the rule
of the totals: an inode's bytes count once, in the first directory where the walk meets
it; every path still counts as a file where it is. Apparent bytes are those of
non-directories (Docker's rule), disk bytes include each directory's own blocks (du's).

The C walk keeps 40 bytes and the name per directory (_walktree.c); this module holds the
same in Python for the fallback loop (`TreeRecorder`), and `prune` is the twin of
`tree_result` in C. What is kept for storing: the root and its first two levels, and every
directory holding at least `min_share` of the volume's disk usage, taken largest first
until the document would pass `budget_bytes`; what a node's pruned subdirectories hold is
its `other_*`. Ancestors sort before descendants, so what is kept is always a tree.
"""

from __future__ import annotations

import heapq
from array import array
from dataclasses import dataclass

from common.messages import LargeFile, ScanTree, TreeNode
from common.names import escape_name

# A stored tree stays under 1 MB: nodes are taken until this estimate is reached.
TREE_BUDGET_BYTES = 900_000
TOP_FILES = 100
NO_PARENT = 0xFFFFFFFF

RawNode = tuple[bytes, int, int, int, int, int, int, int, int, int, int, int, int, int]
"""(name, parent, depth, apparent, disk, files, dirs, own_apparent, own_disk, own_files,
other_apparent, other_disk, other_files, other_dirs), parent an index into the nodes."""
RawTree = tuple[list[RawNode], list[tuple[bytes, int, int]]]
# The fields of a RawNode after its name, in order (TreeNode's names).
_FIGURES = (
    "parent",
    "depth",
    "apparent",
    "disk",
    "files",
    "dirs",
    "own_apparent",
    "own_disk",
    "own_files",
    "other_apparent",
    "other_disk",
    "other_files",
    "other_dirs",
)
"""(nodes, largest files as (path, size, disk)): what both walks return."""


@dataclass(frozen=True, slots=True)
class TreeOptions:
    min_share: float
    budget_bytes: int = TREE_BUDGET_BYTES
    top_files: int = TOP_FILES

    def as_tuple(self) -> tuple[float, int, int]:
        return (self.min_share, self.budget_bytes, self.top_files)


# What a name costs in the stored JSON at most: a byte can become "\u00XX" (a control
# character) or "%XX" (common/names.py); the figures and keys of a node add NODE_COST, those
# of a largest file FILE_COST. The same numbers are in _walktree.c.
NAME_BYTE_COST = 6
NODE_COST = 320
FILE_COST = 100


def node_cost(name: bytes) -> int:
    return NAME_BYTE_COST * len(name) + NODE_COST


class TreeRecorder:
    """The Python walk's records, the same as _walktree.c's."""

    def __init__(self, options: TreeOptions, root_disk: int) -> None:
        self.options = options
        self.parent = array("I")
        self.depth = array("I")
        self.dirs = array("I")
        self.files = array("Q")
        self.apparent = array("Q")
        self.disk = array("Q")
        self.names: list[bytes] = []
        # min-heap of the best candidates: (size, -dir, name inverted) orders the worst first
        self._top: list[tuple[int, int, tuple[int, ...], bytes, int]] = []
        self.add_dir(NO_PARENT, b"", root_disk)

    def add_dir(self, parent: int, name: bytes, disk: int) -> int:
        self.parent.append(parent)
        self.depth.append(0 if parent == NO_PARENT else self.depth[parent] + 1)
        self.dirs.append(0)
        self.files.append(0)
        self.apparent.append(0)
        self.disk.append(disk)
        self.names.append(name)
        return len(self.names) - 1

    def fold(self, index: int) -> None:
        parent = self.parent[index]
        if parent == NO_PARENT:
            return
        self.dirs[parent] += 1 + self.dirs[index]
        self.files[parent] += self.files[index]
        self.apparent[parent] += self.apparent[index]
        self.disk[parent] += self.disk[index]

    def offer_file(self, directory: int, name: bytes, size: int, disk: int) -> None:
        """As the C heap: a larger size wins, then the directory met first, then the
        smaller name; the first of equals stays."""
        if self.options.top_files == 0:
            return
        key = (size, -directory, (*(-byte for byte in name), 1), name, disk)
        if len(self._top) < self.options.top_files:
            heapq.heappush(self._top, key)
        elif self._top[0][:3] < key[:3]:
            heapq.heapreplace(self._top, key)

    def top_files(self) -> list[tuple[int, int, bytes, int]]:
        """(size, dir, name, disk) of the largest files kept, best first."""
        best_first = sorted(self._top, reverse=True)
        return [(size, -neg_dir, name, disk) for size, neg_dir, _, name, disk in best_first]


def prune(recorder: TreeRecorder) -> RawTree:
    """The twin of _walktree.c's tree_result: which records are kept, with their figures."""
    count = len(recorder.names)
    disk, depth, parent = recorder.disk, recorder.depth, recorder.parent
    threshold = recorder.options.min_share * disk[0]
    candidates = [i for i in range(count) if depth[i] <= 2 or disk[i] >= threshold]
    candidates.sort(key=lambda i: (depth[i] > 2, -disk[i], depth[i], i))
    # The largest files first, best first, with at most half the budget (their paths can be
    # long: 10,000 levels deep); the nodes take the rest.
    largest: list[tuple[bytes, int, int]] = []
    spent = 0
    for size, directory, name, file_disk in recorder.top_files():
        path = _file_path(recorder, directory, name)
        cost = NAME_BYTE_COST * len(path) + FILE_COST
        if spent + cost > recorder.options.budget_bytes // 2:
            break
        spent += cost
        largest.append((path, size, file_disk))
    kept: list[int] = []
    for index in candidates:
        cost = node_cost(recorder.names[index])
        if kept and spent + cost > recorder.options.budget_bytes:
            break
        spent += cost
        kept.append(index)
    kept_id = {index: k for k, index in enumerate(kept)}
    # [files, apparent, disk, dirs] of the children of each kept node, kept or not
    shown = [[0, 0, 0, 0] for _ in kept]
    hidden = [[0, 0, 0, 0] for _ in kept]
    for index in range(1, count):
        parent_id = kept_id.get(parent[index])
        if parent_id is None:
            continue
        sums = shown[parent_id] if index in kept_id else hidden[parent_id]
        sums[0] += recorder.files[index]
        sums[1] += recorder.apparent[index]
        sums[2] += disk[index]
        sums[3] += 1 + recorder.dirs[index]
    nodes: list[RawNode] = []
    for k, index in enumerate(kept):
        files, apparent, own_disk = recorder.files[index], recorder.apparent[index], disk[index]
        pruned, visible = hidden[k], shown[k]
        nodes.append(
            (
                recorder.names[index],
                -1 if parent[index] == NO_PARENT else kept_id[parent[index]],
                depth[index],
                apparent,
                own_disk,
                files,
                recorder.dirs[index],
                apparent - pruned[1] - visible[1],
                own_disk - pruned[2] - visible[2],
                files - pruned[0] - visible[0],
                pruned[1],
                pruned[2],
                pruned[0],
                pruned[3],
            )
        )
    return nodes, largest


def _file_path(recorder: TreeRecorder, directory: int, name: bytes) -> bytes:
    parts = [name]
    while recorder.parent[directory] != NO_PARENT:
        parts.append(recorder.names[directory])
        directory = recorder.parent[directory]
    return b"/" + b"/".join(reversed(parts))


def scan_tree(raw: RawTree, options: TreeOptions) -> ScanTree:
    """The message form of a walk's tree: names escaped, largest files largest first."""
    nodes, largest = raw
    return ScanTree(
        nodes=tuple(
            TreeNode(name=escape_name(node[0]), **dict(zip(_FIGURES, node[1:], strict=True)))
            for node in nodes
        ),
        largest_files=tuple(
            LargeFile(path=escape_name(path), size=size, disk_usage=file_disk)
            for path, size, file_disk in sorted(largest, key=lambda item: (-item[1], item[0]))
        ),
        min_share=options.min_share,
    )
