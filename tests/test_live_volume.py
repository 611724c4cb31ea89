"""Issue 13: live figures stay exact. Random sequences of changes across three volumes
(real files on a filesystem of the test's own: tmpfs, and ext4 on a loop device, which
gives a freed inode number out again at once); after each sequence the entries the change
tracker names are looked at again (services/scanner/live/volume.py), and every volume's
live figures must equal a fresh walk's. `make test` runs the default profile;
HYPOTHESIS_PROFILE=long runs many more examples (see the README)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.scanner.live.changes import ChangeTracker, open_tracker
from services.scanner.live.figures import SharedInodes, walked_figures
from services.scanner.live.volume import LiveVolume
from tests.support.file_changes import (
    DEFAULT_TIMEOUT,
    HARD_LINK,
    LONG_RUN_TIMEOUT,
    Operation,
    apply_change,
    operations,
)
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
LONG_RUN = os.environ.get("HYPOTHESIS_PROFILE") == "long"


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


@pytest.fixture(
    scope="module",
    # The filesystem mark, and the per-directory marks of a tracker without privilege.
    params=[("tmpfs", True), ("ext4", True), ("tmpfs", False), ("ext4", False)],
    ids=["tmpfs", "ext4", "tmpfs-directories", "ext4-directories"],
)
def followed(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Followed]:
    kind, filesystem_mark = request.param
    where = tmp_path_factory.mktemp("live")
    with tmpfs_volumes(where, VOLUMES, kind) as volumes_dir:
        tracker = open_tracker(str(volumes_dir), filesystem_mark=filesystem_mark)
        assert tracker.mode == ("filesystem" if filesystem_mark else "directories")
        shared = SharedInodes()  # one filesystem: a hard link may join two volumes
        live = {
            name: LiveVolume(
                os.open(volumes_dir / name / "_data", os.O_RDONLY | os.O_DIRECTORY),
                shared,
                watch=tracker.watch_for(name),
            )
            for name in VOLUMES
        }
        try:
            yield Followed(volumes_dir, tracker, live)
        finally:
            for volume in live.values():
                volume.close()
            tracker.close()


@pytest.mark.timeout(LONG_RUN_TIMEOUT if LONG_RUN else DEFAULT_TIMEOUT)
@given(sequence=operations, settle_every=st.integers(1, 26))
def test_live_figures_equal_a_fresh_walk_after_any_changes(
    followed: Followed, sequence: list[Operation], settle_every: int
) -> None:
    """Events are read every `settle_every` changes (26: once, at the end), so the tracker
    sees them one at a time as well as coalesced."""
    followed.reset()
    for serial, operation in enumerate(sequence):
        apply_change([followed.data(name) for name in VOLUMES], operation, serial)
        if (serial + 1) % settle_every == 0 or operation[0] == HARD_LINK:
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


@pytest.mark.parametrize("other", ["v1", "v2"], ids=["same-volume", "other-volume"])
def test_a_link_written_through_then_removed_leaves_the_link_left_exact(
    followed: Followed, other: str
) -> None:
    """The write's event names the link that is gone by the time it is read: the links
    left (which heard nothing) are looked at again. Found by the long profile."""
    followed.reset()
    kept = followed.data("v1") / "kept"
    kept.write_bytes(b"k" * 100)
    gone = followed.data(other) / "gone"
    os.link(kept, gone)
    followed.settle()
    with open(gone, "ab") as appended:
        appended.write(b"g" * 5000)
    gone.unlink()
    followed.settle()
    for volume in VOLUMES:
        assert followed.live[volume].figures() == walked_figures(str(followed.data(volume)))
