"""The native walk and the du method, checked against du itself and moby's calcSize."""

from __future__ import annotations

import functools
import json
import os
import random
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from services.scanner import du_method
from services.scanner import walk as walk_module
from services.scanner.errors import ScanError
from services.scanner.mounts import _mounts_from_mountinfo, filesystem_type
from services.scanner.walk import WalkCounters, WalkOutcome, walk_volume
from tests.support.walks import VARIANTS, HelperWalked, threads_of, variant_walk

MiB = 1024 * 1024
NOBODY = 65534

needs_du = pytest.mark.skipif(shutil.which("du") is None, reason="du not installed")

Walk = Callable[..., WalkOutcome]


@pytest.fixture(params=sorted(VARIANTS))
def walk(request: pytest.FixtureRequest) -> Walk:
    """walk_volume as each variant walks: every contract test runs against all of them."""
    return variant_walk(request.param)


def test_the_c_walk_is_built_and_the_default() -> None:
    # `pip install -e .` compiles it wherever gcc and the Python headers exist (CI does).
    assert walk_module.IMPLEMENTATION == "c"


def du_bytes(path: str | Path) -> int:
    out = subprocess.run(
        ["du", "-s", "-B1", "--", str(path)], check=True, capture_output=True, text=True
    ).stdout
    return int(out.split("\t", 1)[0])


def moby_calc_size(root: str | Path) -> int:
    """moby pkg/directory calcSize (directory_unix.go), transcribed: the size Docker reports.

    filepath.WalkDir does not follow symlinks; directories are ignored; a file of size 0 is
    ignored; every other entry counts once per inode.
    """
    size = 0
    inodes: set[int] = set()
    stack = [str(root)]
    while stack:
        with os.scandir(stack.pop()) as listing:
            for entry in listing:
                if entry.is_dir(follow_symlinks=False):
                    stack.append(entry.path)
                    continue
                info = entry.stat(follow_symlinks=False)
                if info.st_size == 0 or info.st_ino in inodes:
                    continue
                inodes.add(info.st_ino)
                size += info.st_size
    return size


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


# --- a tree with every kind of entry ----------------------------------------------------


@pytest.fixture
def known_tree(tmp_path: Path) -> Path:
    root = tmp_path / "vol"
    (root / "a" / "b" / "c").mkdir(parents=True)
    (root / "a" / "b" / "c" / "deep.txt").write_bytes(b"d" * 100)
    (root / "a" / "hard1").write_bytes(b"h" * 4000)
    os.link(root / "a" / "hard1", root / "hard2")  # two names, one inode
    (root / "empty_file").touch()
    (root / "empty_dir").mkdir()
    with open(root / "sparse", "wb") as handle:  # 10 MiB apparent, a few blocks allocated
        handle.truncate(10 * MiB)
        handle.write(b"hello")
        handle.seek(5 * MiB)
        handle.write(b"world")
    os.symlink("/", root / "link_root")  # must not be followed out of the tree
    os.symlink("loop_b", root / "loop_a")
    os.symlink("loop_a", root / "loop_b")
    os.symlink("does-not-exist", root / "dangling")
    os.symlink("a", root / "dir_link")  # a symlink to a directory is not a directory
    os.mkfifo(root / "fifo")  # opening it would block the walk forever
    sock_path = root / "sock"
    assert len(str(sock_path)) < 100, "tmp_path too long for a unix socket"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(sock_path))
    server.close()  # the socket file stays
    odd = os.fsencode(root) + b"/odd\xffname\nwith newline"  # not UTF-8, has a newline
    with open(odd, "wb") as handle:
        handle.write(b"1234567")
    odd_dir = os.fsencode(root) + b"/dir\xfe\nodd"
    os.mkdir(odd_dir)  # a directory with such a name must be entered too
    with open(odd_dir + b"/inside", "wb") as handle:
        handle.write(b"12345678901")
    return root


EXPECTED_FILES = 14  # deep, hard1, hard2, empty, sparse, 5 symlinks, fifo, sock, odd, inside
EXPECTED_DIRS = 5  # a, a/b, a/b/c, empty_dir, the odd directory
EXPECTED_TOTAL = (
    100  # deep.txt
    + 4000  # hard1 == hard2, counted once
    + 10 * MiB  # sparse: apparent size
    + sum(len(target) for target in ("/", "loop_b", "loop_a", "does-not-exist", "a"))  # links
    + 7  # the odd name
    + 11  # inside the odd directory
)


@needs_du
def test_known_tree_every_field(walk: Walk, known_tree: Path) -> None:
    before = open_fds()
    outcome = walk(str(known_tree))
    assert open_fds() == before
    assert outcome.file_count == EXPECTED_FILES
    assert outcome.directory_count == EXPECTED_DIRS
    assert outcome.total_size == EXPECTED_TOTAL
    assert outcome.total_size == moby_calc_size(known_tree)
    assert outcome.disk_usage == du_bytes(known_tree)
    assert outcome.disk_usage < 10 * MiB  # the sparse file's holes take no blocks
    assert outcome.largest_file == 10 * MiB
    assert outcome.skipped == 0
    assert outcome.entries == EXPECTED_FILES + EXPECTED_DIRS
    assert outcome.duration_ns > 0


def test_disk_usage_counts_every_inode_once_including_root(walk: Walk, tmp_path: Path) -> None:
    root = tmp_path / "vol"
    (root / "d").mkdir(parents=True)
    (root / "d" / "f").write_bytes(b"x" * 5000)
    os.link(root / "d" / "f", root / "g")
    os.link(root / "d" / "f", root / "d" / "h")
    expected = sum(os.lstat(p).st_blocks * 512 for p in (root, root / "d", root / "d" / "f"))
    outcome = walk(str(root))
    assert outcome.disk_usage == expected
    assert outcome.total_size == 5000
    assert outcome.file_count == 3  # each path counts


def test_ticks_report_running_totals_and_can_abort(walk: Walk, tmp_path: Path) -> None:
    root = tmp_path / "vol"
    for d in range(5):
        (root / f"d{d}").mkdir(parents=True)
        for f in range(20):
            (root / f"d{d}" / f"f{f}").write_bytes(b"x" * 10)
    seen: list[WalkCounters] = []

    def tick(counters: WalkCounters) -> None:
        seen.append(WalkCounters(**{k: getattr(counters, k) for k in counters.__slots__}))

    outcome = walk(str(root), tick, tick_every=10)
    if threads_of(walk) == 1:
        assert len(seen) == outcome.entries // 10
    else:  # thread 0 ticks on its own entries, and on a clock while it waits for the others
        assert seen
    assert [c.entries for c in seen] == sorted(c.entries for c in seen)
    assert seen[-1].total_size <= outcome.total_size == 1000

    class Cancelled(Exception):
        pass

    def cancel(counters: WalkCounters) -> None:
        raise Cancelled

    before = open_fds()
    with pytest.raises(Cancelled):
        walk(str(root), cancel, tick_every=10)
    assert open_fds() == before  # every directory descriptor was closed


def test_directory_swapped_after_lstat_is_not_followed(walk: Walk, tmp_path: Path) -> None:
    """Between a directory's lstat and its open, replace it: the walk must not descend."""
    root = tmp_path / "vol"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    for name in ("d1", "d2"):
        (root / name).mkdir(parents=True)
        for f in range(3):
            (root / name / f"f{f}").write_bytes(b"x" * 100)
    (elsewhere / "big").write_bytes(b"y" * 100_000)

    def swap(counters: WalkCounters) -> None:
        # Entry 3 is the first inside whichever of d1/d2 the walk opened first; the other
        # is still pending, already lstat'ed. d1 becomes a symlink, d2 another directory.
        if counters.entries == 3:
            os.rename(root / "d1", tmp_path / "d1_old")
            os.symlink(elsewhere, root / "d1")
            os.rename(root / "d2", tmp_path / "d2_old")
            os.mkdir(root / "d2")
            os.link(elsewhere / "big", root / "d2" / "big")

    # One thread walking: a threaded walk would open d1 and d2 at once (one for a helper),
    # leaving no window between the two opens; the check itself is the same code.
    outcome = walk(str(root), swap, tick_every=1, threads_allowed=1)
    assert outcome.skipped == 1
    assert outcome.file_count == 3
    assert outcome.total_size == 300
    assert outcome.directory_count == 2


@needs_du
def test_other_filesystems_are_left_out_like_du_x(walk: Walk, tmp_path: Path) -> None:
    root = tmp_path / "vol"
    (root / "mnt").mkdir(parents=True)
    (root / "here").write_bytes(b"h" * 1000)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(root / "mnt")],
        capture_output=True,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr!r}")
    try:
        (root / "mnt" / "there").write_bytes(b"t" * 5000)
        outcome = walk(str(root))
        du_x = subprocess.run(
            ["du", "-s", "-x", "-B1", str(root)], check=True, capture_output=True, text=True
        ).stdout
    finally:
        subprocess.run(["umount", str(root / "mnt")], check=True)
    assert outcome.file_count == 1
    assert outcome.directory_count == 0  # the mount point itself is left out, as by du -x
    assert outcome.total_size == 1000
    assert outcome.skipped == 0
    assert outcome.disk_usage == int(du_x.split("\t", 1)[0])


def test_bind_mounted_ancestor_is_a_cycle_walked_once(walk: Walk, tmp_path: Path) -> None:
    """Two branches, each with the root bind-mounted two levels down: whichever branch a
    threaded walk hands to a helper, the helper must know the root is an ancestor."""
    root = tmp_path / "vol"
    loops = [root / "a" / "x" / "loop", root / "b" / "y" / "loop"]
    for loop in loops:
        loop.mkdir(parents=True)
    (root / "a" / "f").write_bytes(b"x" * 10)
    mounted: list[Path] = []
    try:
        for loop in loops:
            done = subprocess.run(["mount", "--bind", str(root), str(loop)], capture_output=True)
            if done.returncode != 0:
                pytest.skip(f"cannot bind-mount here: {done.stderr!r}")
            mounted.append(loop)
        # A tick on every entry, holding thread 0 until a helper has walked its branch.
        outcome = walk(str(root), HelperWalked(), tick_every=1)
    finally:
        for loop in reversed(mounted):
            subprocess.run(["umount", str(loop)], check=True)
    # Each loop is the root again, on the same filesystem: counted, never entered.
    assert outcome.skipped == 2
    assert outcome.directory_count == 6
    assert outcome.file_count == 1
    if threads_of(walk) > 1:
        assert outcome.threads_used > 1  # a branch was walked by a helper


def make_random_tree(root: Path, seed: int, entries: int) -> None:
    """Directories, files of random sizes, hardlinks (also across directories), symlinks."""
    rng = random.Random(seed)
    dirs = [root]
    files: list[Path] = []
    root.mkdir()
    for index in range(entries):
        parent = rng.choice(dirs)
        roll = rng.random()
        if roll < 0.12:
            (parent / f"d{index}").mkdir()
            dirs.append(parent / f"d{index}")
        elif roll < 0.2 and files:
            os.link(rng.choice(files), parent / f"h{index}")
        elif roll < 0.25:
            os.symlink(f"target-{index}" * rng.randint(1, 5), parent / f"s{index}")
        else:
            (parent / f"f{index}").write_bytes(b"r" * rng.randint(0, 20_000))
            files.append(parent / f"f{index}")


@needs_du
def test_c_and_python_walks_agree_on_a_random_tree(tmp_path: Path) -> None:
    if "c" not in walk_module.IMPLEMENTATIONS:
        pytest.skip("the C walk is not built")
    make_random_tree(tmp_path / "vol", seed=7, entries=3000)
    ticks: dict[str, list[int]] = {"c": [], "python": []}
    outcomes = {
        name: walk_volume(
            str(tmp_path / "vol"),
            functools.partial(lambda seen, counters: seen.append(counters.file_count), ticks[name]),
            tick_every=97,
            max_open_dirs=3,
            implementation=name,
        )
        for name in ("c", "python")
    }
    c, python = outcomes["c"], outcomes["python"]
    assert (c.total_size, c.disk_usage, c.file_count, c.directory_count, c.largest_file) == (
        python.total_size,
        python.disk_usage,
        python.file_count,
        python.directory_count,
        python.largest_file,
    )
    assert c.skipped == python.skipped == 0
    assert c.entries == python.entries == 3000
    assert len(ticks["c"]) == len(ticks["python"]) == 3000 // 97
    assert c.disk_usage == du_bytes(tmp_path / "vol")
    assert c.total_size == moby_calc_size(tmp_path / "vol")


# --- depth beyond PATH_MAX --------------------------------------------------------------

DEPTH = 10_000
SIDE_EVERY = 1_000


@pytest.fixture
def deep_tree(tmp_path: Path) -> Iterator[Path]:
    """10,000 nested directories (a path of ~20 KB), a side branch every 1,000 levels."""
    root = tmp_path / "deep"
    root.mkdir()
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for level in range(1, DEPTH + 1):
            os.mkdir("d", dir_fd=fd)
            if level % SIDE_EVERY == 0:
                os.mkdir("side", dir_fd=fd)
                side = os.open("side/f", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd)
                os.write(side, b"s" * level)
                os.close(side)
            child = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = child
        leaf = os.open("leaf", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd)
        os.write(leaf, b"bottom")
        os.close(leaf)
    finally:
        os.close(fd)
    yield root
    # shutil.rmtree recurses and gives up at this depth; GNU rm walks it with fds.
    subprocess.run(["rm", "-rf", "--", str(root)], check=True)


@needs_du
@pytest.mark.parametrize("max_open_dirs", [256, 7])
def test_tree_deeper_than_path_max(walk: Walk, deep_tree: Path, max_open_dirs: int) -> None:
    sides = DEPTH // SIDE_EVERY
    before = open_fds()
    outcome = walk(str(deep_tree), max_open_dirs=max_open_dirs)
    assert open_fds() == before
    assert outcome.directory_count == DEPTH + sides
    assert outcome.file_count == 1 + sides
    assert outcome.total_size == len(b"bottom") + sum(
        level for level in range(SIDE_EVERY, DEPTH + 1, SIDE_EVERY)
    )
    assert outcome.skipped == 0
    assert outcome.disk_usage == du_bytes(deep_tree)


# --- permissions and bad roots ----------------------------------------------------------


def test_missing_root_is_a_path_error(walk: Walk, tmp_path: Path) -> None:
    with pytest.raises(ScanError) as caught:
        walk(str(tmp_path / "nope"))
    assert caught.value.code == "SCAN_PATH_ERROR"


def test_file_or_symlink_root_is_a_path_error(walk: Walk, tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    (tmp_path / "real").mkdir()
    os.symlink(tmp_path / "real", tmp_path / "link")
    for root in (tmp_path / "file", tmp_path / "link"):
        with pytest.raises(ScanError) as caught:
            walk(str(root))
        assert caught.value.code == "SCAN_PATH_ERROR"


def _as_nobody(run: Callable[[], dict[str, object]]) -> dict[str, object]:
    """`run()` in a forked child that has dropped root, since root ignores mode bits."""
    reader, writer = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never return into pytest
        try:
            os.close(reader)
            os.setgroups([])
            os.setresgid(NOBODY, NOBODY, NOBODY)
            os.setresuid(NOBODY, NOBODY, NOBODY)
            try:
                answer = run()
            except ScanError as exc:
                answer = {"error": exc.code}
            os.write(writer, json.dumps(answer).encode())
        finally:
            os._exit(0)
    os.close(writer)
    with os.fdopen(reader, "rb") as pipe:
        data = pipe.read()
    os.waitpid(pid, 0)
    return dict(json.loads(data))


def _walk_as_nobody(walk: Walk, root: str) -> dict[str, object]:
    def run() -> dict[str, object]:
        outcome: WalkOutcome = walk(root)
        return {k: getattr(outcome, k) for k in WalkOutcome.__slots__ if k != "tree"}

    return _as_nobody(run)


def _locked_tree(root: Path) -> None:
    """One readable file, a directory nobody may open, one whose entries nobody may lstat."""
    root.mkdir(mode=0o755)
    root.chmod(0o755)
    (root / "open_file").write_bytes(b"12345")
    locked = root / "locked"
    locked.mkdir()
    (locked / "inner").write_bytes(b"x" * 10)
    (locked / "innerdir").mkdir()
    locked.chmod(0o000)  # cannot be opened: counted as a directory, and skipped
    listable = root / "listable"
    listable.mkdir()
    (listable / "f3").write_bytes(b"y" * 10)
    listable.chmod(0o744)  # others may list names but not lstat them: f3 is skipped


@pytest.fixture
def shared_tmp() -> Iterator[Path]:
    """A directory nobody can reach (pytest's own tmp_path is private to root)."""
    path = Path(tempfile.mkdtemp(prefix="vv-walk-", dir="/tmp"))
    path.chmod(0o755)
    yield path
    for sub in path.rglob("*"):
        if sub.is_dir() and not sub.is_symlink():
            sub.chmod(0o755)
    shutil.rmtree(path)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to drop to nobody")
def test_unreadable_entries_are_skipped(walk: Walk, shared_tmp: Path) -> None:
    root = shared_tmp / "vol"
    _locked_tree(root)
    locked, listable = root / "locked", root / "listable"
    outcome = _walk_as_nobody(walk, str(root))
    assert outcome["file_count"] == 1
    assert outcome["directory_count"] == 2
    assert outcome["total_size"] == 5
    assert outcome["skipped"] == 2
    expected_disk = sum(os.lstat(p).st_blocks * 512 for p in (root, root / "open_file"))
    expected_disk += os.lstat(locked).st_blocks * 512 + os.lstat(listable).st_blocks * 512
    assert outcome["disk_usage"] == expected_disk


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to drop to nobody")
def test_unreadable_root_is_a_permission_error(walk: Walk, shared_tmp: Path) -> None:
    root = shared_tmp / "private"
    root.mkdir(mode=0o700)
    assert _walk_as_nobody(walk, str(root)) == {"error": "SCAN_PERMISSION_ERROR"}


# --- filesystem type --------------------------------------------------------------------


def test_mountinfo_parsing_unescapes_and_picks_fstype() -> None:
    text = (
        "27 1 254:0 / / rw,relatime - ext4 /dev/vda rw\n"
        "42 27 0:50 / /var/lib/docker/volumes/my\\040vol rw shared:1 - xfs /dev/sdb rw\n"
        "garbage line\n"
    )
    assert _mounts_from_mountinfo(text) == [
        ("/", "ext4"),
        ("/var/lib/docker/volumes/my vol", "xfs"),
    ]


@pytest.mark.skipif(shutil.which("findmnt") is None, reason="findmnt not installed")
def test_filesystem_type_matches_findmnt(walk: Walk, tmp_path: Path) -> None:
    expected = subprocess.run(
        ["findmnt", "-n", "-o", "FSTYPE", "-T", str(tmp_path)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    assert filesystem_type(str(tmp_path)) == expected
    assert walk(str(tmp_path)).filesystem_type == expected


# --- the du method ----------------------------------------------------------------------


@needs_du
def test_du_method_reports_du_disk_usage(known_tree: Path) -> None:
    assert du_method.available()
    outcome = du_method.du_scan(str(known_tree))
    assert outcome.disk_usage == du_bytes(known_tree)
    assert outcome.skipped == 0
    assert outcome.filesystem_type == filesystem_type(str(known_tree))


@needs_du
@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to drop to nobody")
def test_du_method_counts_what_it_could_not_read(shared_tmp: Path) -> None:
    root = shared_tmp / "vol"
    _locked_tree(root)
    answer = _as_nobody(lambda: {"skipped": du_method.du_scan(str(root)).skipped})
    assert answer == {"skipped": 2}  # the locked directory, and the entry it cannot lstat


@needs_du
def test_du_method_paused_while_busy_still_finishes(tmp_path: Path) -> None:
    root = tmp_path / "vol"
    for d in range(20):
        (root / f"d{d}").mkdir(parents=True)
        for f in range(100):
            (root / f"d{d}" / f"f{f}").write_bytes(b"x" * f)
    busy_answers = iter([True] * 10)
    polls: list[bool] = []
    outcome = du_method.du_scan(
        str(root),
        is_busy=lambda: next(busy_answers, False),
        on_poll=polls.append,
        poll_seconds=0.001,
    )
    assert outcome.disk_usage == du_bytes(root)
    if polls:  # du may beat the first poll on a fast machine; if polled, it was paused
        assert polls[0] is True


@needs_du
def test_du_method_bad_roots(tmp_path: Path) -> None:
    with pytest.raises(ScanError) as caught:
        du_method.du_scan(str(tmp_path / "nope"))
    assert caught.value.code == "SCAN_PATH_ERROR"
    (tmp_path / "file").write_text("x")
    with pytest.raises(ScanError) as caught:
        du_method.du_scan(str(tmp_path / "file"))
    assert caught.value.code == "SCAN_PATH_ERROR"
