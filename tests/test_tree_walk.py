"""Issue 12, the walk: the directory tree both walks keep, against du and the files, pruned
within its bounds, and the memory it costs the C walk (RSS of the walking process)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench import walk_rss
from services.scanner import walk as walk_module
from services.scanner.tree import TreeOptions, scan_tree
from services.scanner.walk import walk_volume
from tests.support.tree_checks import (
    apparent_per_directory,
    assert_levels_add_up,
    assert_root_is_the_totals,
    du_per_directory,
    node_paths,
)
from tests.support.walks import THREADED, VARIANTS, variant_walk
from tests.test_walk import make_random_tree

KEEP_ALL = TreeOptions(min_share=0.0, budget_bytes=10**9)


def make_nested_tree(root: Path) -> None:
    """Nested directories, hard links inside one directory, a sparse file, an empty
    directory, a name that is not UTF-8."""
    (root / "a" / "b" / "c").mkdir(parents=True)
    (root / "empty").mkdir()
    (root / "a" / "one").write_bytes(b"1" * 10_000)
    (root / "a" / "b" / "two").write_bytes(os.urandom(50_000))
    os.link(root / "a" / "b" / "two", root / "a" / "b" / "two-again")
    (root / "a" / "b" / "c" / "three").write_bytes(b"3" * 4097)
    with open(root / "sparse", "wb") as sparse:
        sparse.truncate(20 * 1024 * 1024)
        sparse.write(b"head")
    odd = os.fsencode(root) + b"/caf\xe9-\xff"
    os.mkdir(odd)
    with open(odd + b"/inside", "wb") as inside:
        inside.write(b"i" * 3000)
    os.symlink("a/b", root / "link")


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_every_directory_matches_du_and_the_files(tmp_path: Path, variant: str) -> None:
    root = tmp_path / "vol"
    root.mkdir()
    make_nested_tree(root)
    outcome = variant_walk(variant)(str(root), tree=KEEP_ALL)
    assert outcome.tree is not None
    tree = scan_tree(outcome.tree, KEEP_ALL)
    nodes = node_paths(tree)
    du = du_per_directory(root)
    apparent = apparent_per_directory(root)
    assert set(nodes) == set(du) == set(apparent)  # every directory, no other
    for path, node in nodes.items():
        assert node.disk == du[path], path
        assert node.apparent == apparent[path], path
    assert_root_is_the_totals(nodes[b""], outcome)
    assert nodes[b"a/b"].own_files == 2 and nodes[b"a/b"].files == 3  # a path each
    assert nodes[b"empty"].files == 0 and nodes[b"empty"].dirs == 0
    assert_levels_add_up(tree)
    assert "caf%E9-%FF" in {node.name for node in tree.nodes}
    largest = [(file.path, file.size) for file in tree.largest_files]
    assert largest[0] == ("/sparse", 20 * 1024 * 1024)
    assert ("/caf%E9-%FF/inside", 3000) in largest


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_a_hard_link_across_directories_counts_once(tmp_path: Path, variant: str) -> None:
    root = tmp_path / "vol"
    (root / "x").mkdir(parents=True)
    (root / "y").mkdir()
    (root / "x" / "shared").write_bytes(os.urandom(40_000))
    os.link(root / "x" / "shared", root / "y" / "shared")
    outcome = variant_walk(variant)(str(root), tree=KEEP_ALL)
    assert outcome.tree is not None
    nodes = node_paths(scan_tree(outcome.tree, KEEP_ALL))
    holding = [name for name in (b"x", b"y") if nodes[name].apparent == 40_000]
    assert len(holding) == 1  # the inode's bytes are in exactly one of the two
    other = b"y" if holding == [b"x"] else b"x"
    assert nodes[other].apparent == 0 and nodes[other].files == 1  # the path still counts
    assert nodes[b""].disk == outcome.disk_usage == du_per_directory(root)[b""]


def test_c_and_python_keep_the_same_tree(tmp_path: Path) -> None:
    if "c" not in walk_module.IMPLEMENTATIONS:
        pytest.skip("the C walk is not built")
    make_random_tree(tmp_path / "vol", seed=11, entries=4000)
    options = TreeOptions(min_share=0.002, budget_bytes=40_000, top_files=25)
    trees = {
        name: scan_tree(
            walk_volume(
                str(tmp_path / "vol"), implementation=name, tree=options, max_open_dirs=2
            ).tree
            or ([], []),
            options,
        )
        for name in ("c", "python")
    }
    assert trees["c"] == trees["python"]
    assert 0 < len(trees["c"].nodes) < 400  # the budget pruned it
    assert len(trees["c"].largest_files) == 25
    assert_levels_add_up(trees["c"])


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_pruning_keeps_the_bound_and_every_level_adds_up(tmp_path: Path, variant: str) -> None:
    root = tmp_path / "vol"
    root.mkdir()
    sizes: dict[str, int] = {}
    for top in range(20):  # 20 x 1,000 directories, a file of its own size in each
        for inner in range(1_000):
            directory = root / f"t{top:02d}" / f"d{inner:04d}"
            directory.mkdir(parents=True)
            size = 1 + top * 1_000 + inner
            (directory / "f").write_bytes(b"p" * size)
            sizes[f"/t{top:02d}/d{inner:04d}/f"] = size
    options = TreeOptions(min_share=0.001)
    outcome = variant_walk(variant)(str(root), tree=options)
    assert outcome.tree is not None and outcome.directory_count == 20_020
    tree = scan_tree(outcome.tree, options)
    assert len(tree.model_dump_json()) < 1_000_000
    assert len(tree.nodes) < 20_021  # pruned...
    assert {node.depth for node in tree.nodes} >= {0, 1, 2}  # ...but the first levels stay
    assert_levels_add_up(tree)
    assert sum(node.other_dirs for node in tree.nodes) > 0
    expected = sorted(sizes.items(), key=lambda item: (-item[1], item[0]))[:100]
    assert [(file.path, file.size) for file in tree.largest_files] == expected


@pytest.fixture
def deep(tmp_path: Path) -> Iterator[Path]:
    """3,000 nested directories (a path of ~6 KB), a file at the bottom."""
    root = tmp_path / "deep"
    root.mkdir()
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for _ in range(3_000):
            os.mkdir("d", dir_fd=fd)
            child = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = child
        leaf = os.open("leaf", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd)
        os.write(leaf, b"L" * 100_000)
        os.close(leaf)
    finally:
        os.close(fd)
    yield root
    # shutil.rmtree (pytest's clean-up too) recurses and gives up at this depth; rm does not.
    # (Also used below with more in it.)
    subprocess.run(["rm", "-rf", "--", str(root)], check=True)


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_a_tree_deeper_than_path_max_stays_bounded(deep: Path, variant: str) -> None:
    options = TreeOptions(min_share=0.001)  # every level holds 100 % of the bytes
    outcome = variant_walk(variant)(str(deep), tree=options, max_open_dirs=8)
    assert outcome.tree is not None
    tree = scan_tree(outcome.tree, options)
    assert len(tree.model_dump_json()) < 1_000_000
    assert_levels_add_up(tree)
    assert tree.largest_files[0].size == 100_000
    assert tree.largest_files[0].path == "/d" * 3_000 + "/leaf"


@pytest.mark.parametrize("threads", [1, THREADED])
def test_the_c_tree_costs_at_most_64_bytes_per_directory(tmp_path: Path, threads: int) -> None:
    if "c" not in walk_module.IMPLEMENTATIONS:
        pytest.skip("the C walk is not built")
    root = tmp_path / "many"
    root.mkdir()
    for top in range(100):
        base = root / f"t{top:02d}"
        base.mkdir()
        for inner in range(999):
            (base / f"d{inner:03d}").mkdir()
    directories = 100 * 1_000
    rounds = [
        (walk_rss.measure(str(root), False, threads), walk_rss.measure(str(root), True, threads))
        for _ in "ab"
    ]
    during = max(tree["rss_during"] - plain["rss_during"] for plain, tree in rounds)
    during /= directories
    print(
        f"tree memory, {threads} threads: {during:.1f} bytes per directory while walking "
        f"({directories} dirs)"
    )
    assert 30 <= during <= 64  # at least the 40-byte records: the tree was really kept


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_long_paths_and_control_character_names_stay_under_the_bound(
    deep: Path, variant: str
) -> None:
    fd = os.open(deep, os.O_RDONLY | os.O_DIRECTORY)
    for _ in range(3_000):  # by descriptor: the path is longer than PATH_MAX
        child = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
        os.close(fd)
        fd = child
    try:
        for index in range(100):  # the largest files, all 3,000 levels down
            big = os.open(f"big-{index:03d}", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd)
            os.ftruncate(big, 1_000_000 + index)
            os.close(big)
    finally:
        os.close(fd)
    for index in range(300):  # directories whose names escape six times over
        name = bytes([1 + index % 30]) * 200 + b"%d" % index
        os.mkdir(os.fsencode(deep) + b"/" + name)
    options = TreeOptions(min_share=0.0)
    outcome = variant_walk(variant)(str(deep), tree=options)
    assert outcome.tree is not None
    tree = scan_tree(outcome.tree, options)
    assert len(tree.model_dump_json()) < 1_000_000
    assert 0 < len(tree.largest_files) < 100  # as many as the budget allows, largest first
    assert tree.largest_files[0].size == 1_000_099
    assert_levels_add_up(tree)
