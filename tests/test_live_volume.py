"""Issue 13: live figures stay exact. Random sequences of changes across three volumes
(real files on a filesystem of the test's own: tmpfs, and ext4 on a loop device, which
gives a freed inode number out again at once); after each sequence the entries the change
tracker names are looked at again (services/scanner/live/volume.py), and every volume's
live figures must equal a fresh walk's. `make test` runs the default profile;
HYPOTHESIS_PROFILE=long runs many more examples (see the README)."""

from __future__ import annotations

import errno
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.scanner.live.changes import ChangeTracker, open_tracker
from services.scanner.live.volume import LiveVolume, SharedInodes, walked_figures
from tests.support.tmpfs import tmpfs_volumes
from tests.support.trees import du_bytes

VOLUMES = ("v1", "v2", "v3")
settings.register_profile(
    "default",
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
settings.register_profile("long", parent=settings.get_profile("default"), max_examples=5000)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


@dataclass
class Followed:
    volumes_dir: Path
    tracker: ChangeTracker
    live: dict[str, LiveVolume]

    def data(self, volume: str) -> Path:
        return self.volumes_dir / volume / "_data"

    def settle(self) -> None:
        """What the scanner does with a batch of events."""
        changes = self.tracker.read()
        for volume, live in self.live.items():
            if changes.overflowed:
                live.rebuild()
            else:
                live.refresh(changes.entries.get(volume, {}))

    def reset(self) -> None:
        for volume in VOLUMES:
            for entry in self.data(volume).iterdir():
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry)
                else:
                    entry.unlink()
        self.settle()


@pytest.fixture(scope="module", params=["tmpfs", "ext4"])
def followed(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Followed]:
    where = tmp_path_factory.mktemp("live")
    with tmpfs_volumes(where, VOLUMES, request.param) as volumes_dir:
        tracker = open_tracker(str(volumes_dir))
        shared = SharedInodes()  # one filesystem: a hard link may join two volumes
        live = {
            name: LiveVolume(
                os.open(volumes_dir / name / "_data", os.O_RDONLY | os.O_DIRECTORY), shared
            )
            for name in VOLUMES
        }
        try:
            yield Followed(volumes_dir, tracker, live)
        finally:
            for volume in live.values():
                volume.close()
            tracker.close()


def _entries(root: Path) -> tuple[list[Path], list[Path]]:
    """(directories including root, non-directories) below root, symlinks not followed."""
    directories, files = [root], []
    for parent, dirnames, filenames in os.walk(root):
        directories += [Path(parent) / name for name in dirnames]
        files += [Path(parent) / name for name in filenames]
    return directories, files


Operation = tuple[int, int, int, int, int]
operations = st.lists(
    st.tuples(
        st.integers(0, 10),  # what
        st.integers(0, 2),  # in which volume
        st.integers(0, 10**6),  # which entry there
        st.integers(0, 2),  # the other volume (moves, links)
        st.integers(0, 30_000),  # a size, or which entry in the other volume
    ),
    max_size=25,
)


def apply(followed: Followed, operation: Operation, serial: int) -> None:
    """One change; names come from a small pool, so changes land on existing names too
    (a file replaced by a rename, a directory removed and made again under its name)."""
    try:
        _change(followed, operation, serial)
    except (FileExistsError, IsADirectoryError, NotADirectoryError):
        pass  # the name is taken by an entry of another kind: no change
    except OSError as error:
        if error.errno != errno.ENOTEMPTY:
            raise  # renaming onto a directory that holds something: no change


def _change(followed: Followed, operation: Operation, serial: int) -> None:
    what, volume, pick, other_volume, number = operation
    name = (serial + pick) % 4
    directories, files = _entries(followed.data(VOLUMES[volume]))
    other_dirs, _ = _entries(followed.data(VOLUMES[other_volume]))
    here = directories[pick % len(directories)]
    there = other_dirs[number % len(other_dirs)]
    file = files[pick % len(files)] if files else None
    regular = file if file is not None and not file.is_symlink() else None
    if what == 0:
        (here / f"f{name}").write_bytes(b"a" * number)
    elif what == 1 and regular is not None:
        with open(regular, "ab") as appended:
            appended.write(b"b" * (number % 9000 + 1))
    elif what == 2 and regular is not None:
        os.truncate(regular, number * 7)  # shorter, or longer and sparse
    elif what == 3 and regular is not None:
        regular.write_bytes(b"c" * (number % 5000))  # overwritten
    elif what == 4 and file is not None:
        file.unlink()
    elif what == 5:
        (here / f"d{name}").mkdir()
    elif what == 6 and here != followed.data(VOLUMES[volume]):
        shutil.rmtree(here)  # a directory and everything below it
    elif what == 7 and file is not None:
        os.rename(file, there / f"f{name}")  # within a directory, across them or volumes
    elif what == 8 and here != followed.data(VOLUMES[volume]):
        if not there.is_relative_to(here):
            os.rename(here, there / f"d{name}")
    elif what == 9 and regular is not None:
        os.link(regular, there / f"f{name}")
    elif what == 10:
        os.symlink("target" * (number % 5 + 1), here / f"f{name}")


@given(sequence=operations, settle_every=st.integers(1, 26))
def test_live_figures_equal_a_fresh_walk_after_any_changes(
    followed: Followed, sequence: list[Operation], settle_every: int
) -> None:
    """Events are read every `settle_every` changes (26: once, at the end), so the tracker
    sees them one at a time as well as coalesced."""
    followed.reset()
    for serial, operation in enumerate(sequence):
        apply(followed, operation, serial)
        if (serial + 1) % settle_every == 0:
            followed.settle()
    followed.settle()
    for volume in VOLUMES:
        assert followed.live[volume].figures() == walked_figures(str(followed.data(volume))), volume


def test_live_disk_usage_equals_du_after_a_burst(followed: Followed) -> None:
    followed.reset()
    data = followed.data("v1")
    (data / "a" / "b").mkdir(parents=True)
    for index in range(200):
        (data / "a" / ("b" if index % 2 else "") / f"f{index}").write_bytes(b"x" * index * 37)
    os.link(data / "a" / "f0", data / "a" / "b" / "linked")
    os.rename(data / "a" / "b", followed.data("v2") / "b")
    followed.settle()
    for volume in ("v1", "v2"):
        figures = followed.live[volume].figures()
        assert figures == walked_figures(str(followed.data(volume)))
        assert figures.disk_usage == du_bytes(followed.data(volume))
