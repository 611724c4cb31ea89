"""Issue 14: the native walk on several threads, and each scan's share of the CPUs.

The contract tests of test_walk.py and test_tree_walk.py run the threaded walk too; this
adds what only threads have: how many walk at once, and the share a scan may take."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from services.scanner import walk as walk_module
from services.scanner.cpu_share import CpuShare
from services.scanner.tree import TreeOptions, scan_tree
from services.scanner.walk import WalkCounters, WalkOutcome, walk_volume
from tests.support.tree_checks import (
    assert_levels_add_up,
    assert_root_is_the_totals,
    du_per_directory,
    node_paths,
)
from tests.support.trees import du_bytes
from tests.support.walks import HelperWalked
from tests.test_walk import make_random_tree, moby_calc_size

pytestmark = pytest.mark.skipif(
    "c" not in walk_module.IMPLEMENTATIONS, reason="the C walk is not built"
)

KEEP_ALL = TreeOptions(min_share=0.0, budget_bytes=10**9)


def figures(outcome: WalkOutcome) -> tuple[int, ...]:
    return (
        outcome.total_size,
        outcome.disk_usage,
        outcome.file_count,
        outcome.directory_count,
        outcome.largest_file,
        outcome.skipped,
        outcome.entries,
    )


@pytest.fixture(scope="module")
def random_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("threads") / "vol"
    make_random_tree(root, seed=11, entries=6000)
    return root


def test_threads_walk_at_once_and_agree_with_one_thread_and_du(random_tree: Path) -> None:
    one = walk_volume(str(random_tree), threads=1, tree=KEEP_ALL)
    many = walk_volume(str(random_tree), HelperWalked(), threads=4, tick_every=20, tree=KEEP_ALL)
    assert one.threads_used == 1
    assert many.threads_used >= 2  # a helper took a subdirectory
    assert figures(many) == figures(one)
    assert many.disk_usage == du_bytes(random_tree)
    assert many.total_size == moby_calc_size(random_tree)
    assert_tree_is_whole(many, random_tree)


def assert_tree_is_whole(outcome: WalkOutcome, root: Path) -> None:
    """Every directory, adding up to the totals. (Per directory, a file hard-linked across
    directories counts where the walk met it first, which the threads decide: the exact
    per-directory check is test_tree_walk.py's, on trees without such links.)"""
    assert outcome.tree is not None
    tree = scan_tree(outcome.tree, KEEP_ALL)
    nodes = node_paths(tree)
    assert set(nodes) == set(du_per_directory(root))
    assert_root_is_the_totals(nodes[b""], outcome)
    assert_levels_add_up(tree)


def test_one_thread_allowed_walks_on_one(random_tree: Path) -> None:
    def keep_one(counters: WalkCounters) -> None:
        counters.threads_allowed = 1

    one = walk_volume(str(random_tree), threads=1)
    held = walk_volume(str(random_tree), keep_one, threads=4, threads_allowed=1, tick_every=50)
    assert held.threads_used == 1
    assert figures(held) == figures(one)


def test_the_allowed_count_changing_at_every_tick_stays_exact(random_tree: Path) -> None:
    """Threads pause and resume at every tick (tick_every 7): nothing is lost or doubled."""
    allowances = iter([1, 4, 2, 0, 3] * 10_000)

    def churn(counters: WalkCounters) -> None:
        counters.threads_allowed = next(allowances)

    one = walk_volume(str(random_tree), threads=1, tree=KEEP_ALL)
    churned = walk_volume(str(random_tree), churn, threads=4, tick_every=7, tree=KEEP_ALL)
    assert figures(churned) == figures(one)
    assert_tree_is_whole(churned, random_tree)


def test_a_cancelled_threaded_walk_closes_every_descriptor(random_tree: Path) -> None:
    class Cancelled(Exception):
        pass

    ticks = iter(range(1_000_000))
    threads_seen: list[int] = []
    hand_over = HelperWalked()

    def cancel_late(counters: WalkCounters) -> None:
        hand_over(counters)
        if hand_over.waited and next(ticks) == 20:
            threads_seen.append(len(os.listdir("/proc/self/task")))
            raise Cancelled

    alone = len(os.listdir("/proc/self/task"))
    before = sorted(os.listdir("/proc/self/fd"))
    with pytest.raises(Cancelled):
        walk_volume(str(random_tree), cancel_late, threads=4, tick_every=10)
    assert threads_seen[0] > alone  # helpers were walking (and holding descriptors)
    assert sorted(os.listdir("/proc/self/fd")) == before
    assert len(os.listdir("/proc/self/task")) == alone  # and every one was joined


def test_a_scan_takes_its_share_of_the_cpus() -> None:
    board = [0, 0, 0, 0]
    first = CpuShare(0, board, 0, cpus=4)
    second = CpuShare(0, board, 1, cpus=4)
    third = CpuShare(0, board, 2, cpus=4)
    assert first.threads(starting=True) == 4
    first.begin()
    assert first.threads() == 4  # alone: every CPU
    second.begin()
    assert first.threads() == second.threads() == 2
    third.begin()
    assert first.threads() == 1  # 4 // 3: never more threads than CPUs in all
    assert third.threads(starting=True) == 1
    second.end()
    third.end()
    assert first.threads() == 4  # the others ended: the share grows back at the next tick
    assert CpuShare(2, board, 3, cpus=4).threads(starting=True) == 2  # VV_WALK_THREADS caps
    unmarked = CpuShare(0, None, None, cpus=4)  # in-process worker: no pool, no board
    unmarked.begin()
    assert unmarked.threads() == 4
