"""Issue 5: the scanner stays exact, bounded and inside the volume on hostile trees.

(Symlink loops and links to /, 10,000-level nesting, non-UTF-8 and newline names, FIFOs,
sockets and sparse files are in test_walk.py; this adds what it did not cover, and the
mountpoint confinement, both in-process and through the whole stack.)
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

import httpx
import pytest

from bench import walk_rss
from services.scanner.confine import open_confined, real_path, relative_to_allowed
from services.scanner.errors import ScanError
from services.scanner.walk import WalkCounters, walk_volume
from tests.support.engine import PrivateEngine
from tests.support.health import wait_scanners_alive
from tests.support.processes import Stack
from tests.support.trees import du_bytes, make_many_files, mountpoint
from tests.support.waiting import wait_until
from tests.support.walks import THREADED

ONE_DIR_ENTRIES = 200_000


def test_device_nodes_are_counted_never_opened(tmp_path: Path) -> None:
    root = tmp_path / "vol"
    root.mkdir()
    os.mknod(root / "null-like", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    os.mknod(root / "loop-like", 0o660 | stat.S_IFBLK, os.makedev(7, 0))
    (root / "plain").write_bytes(b"p" * 10)
    outcome = walk_volume(str(root))
    assert outcome.file_count == 3
    assert outcome.total_size == 10  # device nodes have no size of their own
    assert outcome.largest_file == 10
    assert outcome.skipped == 0
    assert outcome.disk_usage == du_bytes(root)


def test_200000_entries_in_one_directory_exact_and_memory_bounded(tmp_path: Path) -> None:
    root = tmp_path / "wide"
    root.mkdir()
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for index in range(ONE_DIR_ENTRIES):
            os.close(os.open(f"f{index}", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd))
        os.link("f0", "f0-again", src_dir_fd=fd, dst_dir_fd=fd)  # one real hardlink
    finally:
        os.close(fd)
    small = tmp_path / "small"
    small.mkdir()
    (small / "one").touch()
    expected_disk = du_bytes(root)
    for threads in (1, THREADED):
        outcome = walk_volume(str(root), threads=threads)
        assert outcome.file_count == ONE_DIR_ENTRIES + 1
        assert outcome.total_size == 0 and outcome.skipped == 0
        assert outcome.disk_usage == expected_disk
        # Memory is the process's (RSS: the C walk allocates outside Python's sight), each
        # walk in a fresh process, against the walk of a directory of one file. Nothing per
        # entry is kept (only multi-link inodes are remembered): a set of 200,000 inode
        # numbers alone would take several MiB.
        grown = walk_rss.measure(str(root), False, threads)["rss_during"]
        grown -= walk_rss.measure(str(small), False, threads)["rss_during"]
        print(
            f"200,000 entries in one directory, {threads} threads: "
            f"RSS {grown / 1024:.0f} KiB over a one-file walk"
        )
        assert grown < 2 * 1024 * 1024, f"grew {grown} bytes"
    shutil.rmtree(root)


def test_entries_vanishing_and_appearing_during_the_walk(tmp_path: Path) -> None:
    root = tmp_path / "churn"
    root.mkdir()
    make_many_files(root, 500, per_dir=50)  # d0000 .. d0009
    churned = False

    def churn(counters: WalkCounters) -> None:
        nonlocal churned
        if churned or counters.entries != 2:
            return
        # The root has been listed and its first entry stat'ed: now everything below it
        # vanishes, and new entries appear where the walk has already listed.
        churned = True
        for d in range(10):
            shutil.rmtree(root / f"d{d:04d}")
            (root / f"appeared{d}").write_bytes(b"n" * 7)
        (root / "d0009").mkdir()  # one comes back: a new inode under the old name

    outcome = walk_volume(str(root), churn, tick_every=1)
    assert churned
    # The first entry was counted as a directory before it vanished; it cannot be opened
    # (or, if it was d0009, is another inode now): skipped. The other vanished ones fail their
    # lstat: skipped. d0009, if stat'ed after it came back, is counted and walked (empty).
    # So each of the 10 names is skipped once, plus the one counted directory: 11.
    assert outcome.file_count == 0 and outcome.total_size == 0
    assert outcome.skipped + outcome.directory_count == 11
    assert outcome.skipped >= 9
    assert outcome.entries == 10  # what appeared after the listing is not part of this walk


HOSTILE_MOUNTPOINTS = [
    "/",
    "/etc",
    "{root}",  # the volumes directory itself: every volume at once
    "{root}/",
    "{root}/../../etc",
    "{root}/v/../../../etc",
    "{root}/./v/_data",
    "{root}//v/_data",
    "//{root}/v/_data",
    "relative/v/_data",
    "{root}/v/_data\n",
    "{root}/v\x00/_data",
    "{root}-sibling/v/_data",
]


def test_mountpoints_outside_the_volumes_directory_are_refused(tmp_path: Path) -> None:
    root = tmp_path / "volumes"
    (root / "v" / "_data").mkdir(parents=True)
    (tmp_path / "volumes-sibling" / "v" / "_data").mkdir(parents=True)
    for template in HOSTILE_MOUNTPOINTS:
        hostile = template.format(root=root)
        with pytest.raises(ScanError) as refused:
            open_confined(hostile, [str(root)])
        assert refused.value.code == "SCAN_PATH_ERROR", hostile
    with pytest.raises(ScanError):
        open_confined(f"{root}/v/_data", [])  # no known volumes directory: nothing allowed
    assert relative_to_allowed(f"{root}/v/_data", [str(root)]) == (str(root), "v/_data")
    fd = open_confined(f"{root}/v/_data", [str(root)])
    try:
        assert real_path(fd) == str(root / "v" / "_data")
    finally:
        os.close(fd)


def test_symlink_anywhere_below_the_root_is_not_followed(tmp_path: Path) -> None:
    root = tmp_path / "volumes"
    secret = tmp_path / "secret"
    (secret / "_data").mkdir(parents=True)
    (secret / "_data" / "key").write_bytes(b"k" * 100)
    root.mkdir()
    os.symlink(secret, root / "evil")  # the volume's directory is a link elsewhere
    (root / "ok").mkdir()
    os.symlink(secret / "_data", root / "ok" / "_data")  # or its _data is
    for mountpoint_path in (root / "evil" / "_data", root / "ok" / "_data"):
        with pytest.raises(ScanError) as refused:
            open_confined(str(mountpoint_path), [str(root)])
        assert refused.value.code == "SCAN_PATH_ERROR"


# --- through the whole stack ------------------------------------------------------------


@pytest.fixture
def services(engine: PrivateEngine, stack: Stack) -> Stack:
    stack.start()
    stack.wait_http_ready()
    wait_scanners_alive(stack)
    return stack


def _refresh(stack: Stack, name: str) -> httpx.Response:
    url = f"{stack.base_url}/api/v1/volumes/{name}"
    wait_until(lambda: httpx.get(url).status_code == 200, 15, message=f"{name} never listed")
    return httpx.post(url + "/size/refresh", timeout=60)


def test_filesystem_mounted_inside_a_volume_is_left_out_through_the_stack(
    engine: PrivateEngine, services: Stack
) -> None:
    engine.client.volumes.create("vv-mounted")
    root = mountpoint(engine, "vv-mounted")
    (root / "here").write_bytes(b"h" * 1000)
    (root / "mnt").mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(root / "mnt")],
        capture_output=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr!r}")
    try:
        (root / "mnt" / "there").write_bytes(b"t" * 5000)
        response = _refresh(services, "vv-mounted")
        du_x = subprocess.run(
            ["du", "-s", "-x", "-B1", str(root)], check=True, capture_output=True, text=True
        ).stdout
    finally:
        subprocess.run(["umount", str(root / "mnt")], check=True)
    assert response.status_code == 200, response.text
    result = response.json()["result"]
    assert result["file_count"] == 1 and result["total_size"] == 1000
    assert result["directory_count"] == 0 and result["skipped"] == 0
    assert result["disk_usage"] == int(du_x.split("\t", 1)[0])


def test_volume_directory_swapped_for_a_symlink_is_refused_through_the_stack(
    engine: PrivateEngine, services: Stack, tmp_path: Path
) -> None:
    """Someone with the engine's powers points a volume's directory elsewhere on the host:
    the path the engine reports is unchanged, but the scan must not follow it out."""
    engine.client.volumes.create("vv-swapped")
    data = mountpoint(engine, "vv-swapped")
    elsewhere = tmp_path / "host-secrets"
    (elsewhere / "_data").mkdir(parents=True)
    (elsewhere / "_data" / "id_rsa").write_bytes(b"s" * 3000)
    volume_dir = data.parent
    shutil.rmtree(volume_dir)
    os.symlink(elsewhere, volume_dir)
    try:
        response = _refresh(services, "vv-swapped")
    finally:
        os.unlink(volume_dir)
        (volume_dir / "_data").mkdir(parents=True)
    assert response.status_code == 422, response.text
    assert response.json()["code"] == "SCAN_PATH_ERROR"
    assert "3000" not in response.text
