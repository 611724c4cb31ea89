"""Issue 13, the first part: the change tracker (services/scanner/live/changes.py) on a real
filesystem of its own (tmpfs, so nothing else on the machine writes to it)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.scanner.live.changes import ChangeTracker, open_tracker, volume_place
from tests.support.tmpfs import tmpfs_volumes

NOBODY = 65534


@pytest.fixture
def volumes(tmp_path: Path) -> Iterator[Path]:
    with tmpfs_volumes(tmp_path, ("v1", "v2")) as volumes_dir:
        yield volumes_dir


@pytest.fixture
def tracker(volumes: Path) -> Iterator[ChangeTracker]:
    opened = open_tracker(str(volumes))
    try:
        yield opened
    finally:
        opened.close()


def test_changes_are_reported_per_volume_by_directory(
    volumes: Path, tracker: ChangeTracker
) -> None:
    v1, v2 = volumes / "v1" / "_data", volumes / "v2" / "_data"
    (v1 / "a" / "b").mkdir(parents=True)
    (v1 / "a" / "b" / "f").write_bytes(b"x" * 100)
    (v2 / "g").write_bytes(b"y")
    (volumes.parent / "elsewhere" / "h").write_bytes(b"z")  # same filesystem, no volume
    os.rename(v1 / "a" / "b" / "f", v2 / "moved")
    os.link(v2 / "g", v1 / "a" / "g-again")
    changes = tracker.read()
    assert changes.touched == {"v1": {"", "a", "a/b"}, "v2": {""}}
    # and the entries named in each: what a live volume looks at again, one lstat each
    assert changes.entries["v2"] == {"": {"g", "moved"}}
    assert changes.entries["v1"]["a"] == {"b", "g-again"}
    assert changes.entries["v1"]["a/b"] == {"f"}
    assert not changes.overflowed
    assert tracker.read().events == 0  # read once, never again

    (v1 / "a" / "b" / "f2").write_bytes(b"")
    os.truncate(v2 / "g", 0)
    (v1 / "a" / "g-again").unlink()
    assert tracker.read().touched == {"v1": {"a", "a/b"}, "v2": {""}}


def test_a_moved_directory_is_reported_by_its_new_path(
    volumes: Path, tracker: ChangeTracker
) -> None:
    data = volumes / "v1" / "_data"
    (data / "old" / "inner").mkdir(parents=True)
    (data / "old" / "inner" / "f").write_bytes(b"1")
    assert tracker.read().touched == {"v1": {"", "old", "old/inner"}}  # handles now kept
    os.rename(data / "old", data / "new")
    (data / "new" / "inner" / "f").write_bytes(b"22")
    assert tracker.read().touched == {"v1": {"", "new/inner"}}
    os.rename(data / "new", volumes / "v2" / "_data" / "across")
    (volumes / "v2" / "_data" / "across" / "inner" / "g").write_bytes(b"3")
    assert tracker.read().touched == {"v1": {""}, "v2": {"", "across/inner"}}


def test_a_directory_moved_in_from_outside_the_volumes_is_followed(
    volumes: Path, tracker: ChangeTracker
) -> None:
    outside = volumes.parent / "elsewhere" / "tree"
    (outside / "inner").mkdir(parents=True)
    (outside / "inner" / "f").write_bytes(b"1")  # its handle is kept: outside every volume
    (volumes.parent / "elsewhere" / "other").mkdir()
    os.rename(volumes.parent / "elsewhere" / "other", volumes.parent / "elsewhere" / "o2")
    assert tracker.read().touched == {}  # a move outside the volumes: nothing
    os.rename(outside, volumes / "v1" / "_data" / "tree")
    (volumes / "v1" / "_data" / "tree" / "inner" / "g").write_bytes(b"2")
    assert tracker.read().touched == {"v1": {"", "tree/inner"}}


def test_more_events_than_the_queue_holds_say_so(volumes: Path, tracker: ChangeTracker) -> None:
    limit_file = Path("/proc/sys/fs/fanotify/max_queued_events")
    limit = int(limit_file.read_text()) if limit_file.exists() else 16384
    data = os.open(volumes / "v1" / "_data", os.O_RDONLY | os.O_DIRECTORY)
    try:
        for index in range(limit + 1000):  # nobody reads meanwhile: the queue fills
            os.close(os.open(f"f{index}", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=data))
    finally:
        os.close(data)
    changes = tracker.read()
    assert changes.overflowed
    assert changes.touched == {"v1": {""}}  # what did arrive is still reported


@pytest.mark.parametrize(
    ("path", "place"),
    [
        ("/v/name/_data", ("name", "")),
        ("/v/name/_data/a/b", ("name", "a/b")),
        ("/v/name", None),
        ("/v/name/_database", None),
        ("/v/name/other/_data", None),
        ("/vx/name/_data", None),
        ("/v", None),
    ],
)
def test_a_path_is_placed_in_its_volume(path: str, place: tuple[str, str] | None) -> None:
    assert volume_place("/v", path) == place
