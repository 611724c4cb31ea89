"""The volumes the tracker follows, and what it does with each batch of events.

The gateway names the volumes (LiveFollow); a volume is followed only when its mountpoint
is `<volumes_dir>/<name>/_data` on the filesystem the change tracker marks, since the
tracker places events by that path. Each volume is read in full once, when the host's load
allows (the same throttle as scans), after the filesystem mark is set, so nothing that
changes during the read is missed: its events wait in the kernel's queue and are looked at
afterwards. Lost events (the queue overflowed, a handle that could not be resolved) make
every followed volume stale: each is read again, one at a time through the throttle, and
its figures say `stale` until then. Nothing here touches the bus.
"""

from __future__ import annotations

import logging
import os
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from common.messages import LiveFollow, LiveMode, LiveSize, LiveTarget, utc_now
from services.scanner.confine import allowed_roots, open_confined
from services.scanner.errors import ScanError
from services.scanner.live.changes import (
    Changes,
    ChangeTracker,
    TrackerUnavailable,
    open_tracker,
)
from services.scanner.live.volume import LiveFigures, LiveVolume, SharedInodes

log = logging.getLogger(__name__)

RATE_WINDOW_SECONDS = 10.0  # events per second are counted over this window
TrackerOpener = Callable[[str], ChangeTracker]


@dataclass(slots=True)
class _Followed:
    volume: LiveVolume
    updated_at: datetime


@dataclass(slots=True)
class _Reading:
    """A full read in progress, in steps; the events for it wait here until it is done."""

    name: str
    volume: LiveVolume
    steps: Iterator[None]
    first: bool  # not followed before: it joins the followed when done
    started: float
    held: dict[str, set[str]] = field(default_factory=dict)


class Following:
    def __init__(
        self,
        scan_roots: Sequence[str],
        is_busy: Callable[[], bool],
        opener: TrackerOpener = open_tracker,
    ) -> None:
        self._scan_roots = list(scan_roots)
        self._is_busy = is_busy
        self._opener = opener
        self.tracker: ChangeTracker | None = None
        self.mode: LiveMode = "starting"
        self.reason: str | None = None
        self.follow_version = -1
        self._volumes_dir: str | None = None
        self._targets: dict[str, str] = {}  # followable volume -> mountpoint
        self._not_followable: dict[str, str] = {}  # volume -> why
        self._live: dict[str, _Followed] = {}
        self._stale: set[str] = set()  # followed, figures not exact: waiting for a read
        self._pending: deque[str] = deque()  # to read in full, first or again
        self._reading: _Reading | None = None
        self._shared = SharedInodes()
        self._changed: set[str] = set()  # figures to send
        self._unfollowed: set[str] = set()  # to tell the gateway
        self.events_total = 0
        self.resyncs_total = 0
        self._rate: deque[tuple[float, int]] = deque()

    # --- what the gateway asks --------------------------------------------------------

    def apply(self, follow: LiveFollow) -> None:
        self.follow_version = follow.version
        if follow.volumes_dir != self._volumes_dir or self.mode == "starting":
            self._open(follow.volumes_dir)
        wanted: dict[str, str] = {}
        self._not_followable.clear()
        for target in follow.volumes:
            why = self._why_not(target)
            if why is None:
                wanted[target.volume_id] = target.mountpoint
            else:
                self._not_followable[target.volume_id] = why
        for name in [name for name in self._targets if wanted.get(name) != self._targets[name]]:
            self._drop(name)
        for name, mountpoint in wanted.items():
            if name not in self._targets:
                self._targets[name] = mountpoint
                self._pending.append(name)
        for name in follow.resync:
            self._make_stale(name, "a walk disagreed")

    def _open(self, volumes_dir: str | None) -> None:
        for name in list(self._targets):
            self._drop(name)
        if self.tracker is not None:
            self.tracker.close()
            self.tracker = None
        self._volumes_dir = volumes_dir
        if volumes_dir is None:
            self.mode, self.reason = "unavailable", "the engine's volumes directory is not known"
            return
        try:
            self.tracker = self._opener(volumes_dir)
        except TrackerUnavailable as error:
            self.mode, self.reason = "unavailable", str(error)
            log.warning("live sizes unavailable volumes_dir=%s reason=%s", volumes_dir, error)
            return
        except OSError as error:
            self.mode, self.reason = "unavailable", f"{volumes_dir}: {error.strerror}"
            log.warning("live sizes unavailable volumes_dir=%s reason=%s", volumes_dir, error)
            return
        self.mode, self.reason = "filesystem", None
        log.info("live sizes following volumes_dir=%s mode=filesystem", volumes_dir)

    def _why_not(self, target: LiveTarget) -> str | None:
        if self.tracker is None or self._volumes_dir is None:
            return self.reason or "no tracker"
        expected = f"{self._volumes_dir.rstrip('/')}/{target.volume_id}/_data"
        if target.mountpoint != expected:
            return "its mountpoint is not in the engine's volumes directory"
        return None

    def _drop(self, name: str) -> None:
        self._targets.pop(name, None)
        if self._reading is not None and self._reading.name == name:
            if self._reading.first:
                self._reading.volume.close()
            self._reading = None
        followed = self._live.pop(name, None)
        if followed is not None:
            followed.volume.close()
            self._unfollowed.add(name)
        self._stale.discard(name)
        self._changed.discard(name)
        if name in self._pending:
            self._pending.remove(name)

    def _make_stale(self, name: str, why: str) -> None:
        if name not in self._live or name in self._stale:
            return
        self._stale.add(name)
        self._changed.add(name)
        self._pending.append(name)
        self.resyncs_total += 1
        log.warning("live volume stale, reading it again volume_id=%s reason=%s", name, why)

    def resend_all(self) -> None:
        self._changed |= self._live.keys()

    # --- events -----------------------------------------------------------------------

    def take_events(self) -> int:
        """Apply every event waiting in the kernel's queue; how many there were."""
        if self.tracker is None:
            return 0
        changes = self.tracker.read()
        self._count(changes.events)
        if changes.overflowed:
            reading = self._reading
            if reading is not None:  # what it read so far may have missed a change
                self._reading = None
                if reading.first:
                    reading.volume.close()
                self._pending.appendleft(reading.name)
            for name in list(self._live):
                if reading is None or name != reading.name:
                    self._make_stale(name, "events were lost")
            return changes.events
        self._refresh(changes)
        return changes.events

    def _refresh(self, changes: Changes) -> None:
        linked_before = any(self._live[name].volume.has_links() for name in self._live)
        now = utc_now()
        reading = self._reading
        for name, entries in changes.entries.items():
            if reading is not None and name == reading.name:
                for directory, names in entries.items():
                    reading.held.setdefault(directory, set()).update(names)
                continue
            followed = self._live.get(name)
            if followed is None or name in self._stale:
                continue  # not read yet: its read will see it as it is
            followed.volume.refresh(entries)
            followed.updated_at = now
            self._changed.add(name)
        if linked_before and changes.entries:
            # A hard link may join volumes: a write through one changes the other's figures.
            for name, followed in self._live.items():
                if followed.volume.has_links():
                    followed.updated_at = now
                    self._changed.add(name)

    def _count(self, events: int) -> None:
        now = time.monotonic()
        self.events_total += events
        if events:
            self._rate.append((now, events))
        while self._rate and now - self._rate[0][0] > RATE_WINDOW_SECONDS:
            self._rate.popleft()

    def events_per_second(self) -> float:
        self._count(0)
        return sum(count for _, count in self._rate) / RATE_WINDOW_SECONDS

    # --- full reads -------------------------------------------------------------------

    def has_pending(self) -> bool:
        return bool(self._pending) or self._reading is not None

    def read_step(self) -> bool:
        """One step of the current full read (or the start of the next), unless the host
        is busy; True when there was one to take."""
        if self._is_busy():
            return False
        if self._reading is None and not self._start_reading():
            return False
        reading = self._reading
        assert reading is not None
        try:
            next(reading.steps)
            return True
        except StopIteration:
            pass
        except OSError as error:  # the volume's root went unreadable under us
            self._not_followable[reading.name] = f"cannot be read: {error.strerror}"
            log.warning("live volume not followed volume_id=%s reason=%s", reading.name, error)
            self._drop(reading.name)
            return True
        self._reading = None
        reading.volume.refresh(reading.held)  # what changed while it was read
        if reading.first:
            self._live[reading.name] = _Followed(reading.volume, utc_now())
        else:
            self._live[reading.name].updated_at = utc_now()
        self._stale.discard(reading.name)
        self._changed.add(reading.name)
        log.info(
            "live volume read volume_id=%s directories=%d elapsed_ms=%d",
            reading.name,
            reading.volume.directories(),
            (time.monotonic() - reading.started) * 1000,
        )
        return True

    def _start_reading(self) -> bool:
        while self._pending:
            name = self._pending.popleft()
            mountpoint = self._targets.get(name)
            if mountpoint is None:
                continue
            followed = self._live.get(name)
            if followed is not None:
                volume, first = followed.volume, False
            else:
                try:
                    roots = allowed_roots(self._scan_roots, self._volumes_dir)
                    fd = open_confined(mountpoint, roots)
                except ScanError as error:
                    self._not_followable[name] = str(error)
                    self._targets.pop(name, None)
                    log.warning("live volume not followed volume_id=%s reason=%s", name, error)
                    continue
                volume, first = LiveVolume(fd, self._shared, read=False), True
            self._reading = _Reading(name, volume, volume.reading(), first, time.monotonic())
            return True
        return False

    # --- what the gateway is told -----------------------------------------------------

    def take_sizes(self) -> tuple[list[LiveSize], list[str]]:
        """The figures changed since the last call, and the volumes no longer followed."""
        sizes = [self._size(name) for name in sorted(self._changed) if name in self._live]
        unfollowed = sorted(self._unfollowed)
        self._changed.clear()
        self._unfollowed.clear()
        return sizes, unfollowed

    def _size(self, name: str) -> LiveSize:
        followed = self._live[name]
        figures: LiveFigures = followed.volume.figures()
        return LiveSize(
            volume_id=name,
            total_size=figures.total_size,
            disk_usage=figures.disk_usage,
            file_count=figures.file_count,
            directory_count=figures.directory_count,
            updated_at=followed.updated_at,
            stale=name in self._stale,
        )

    def has_changes(self) -> bool:
        return bool(self._changed or self._unfollowed)

    def counts(self) -> dict[str, float | int]:
        directories = sum(f.volume.directories() for f in self._live.values())
        return {
            "followed": len(self._live) - len(self._stale),
            "pending": len(self._pending) + (self._reading is not None),
            "not_followable": len(self._not_followable),
            "directories": directories,
        }

    def close(self) -> None:
        for name in list(self._targets) + list(self._live):
            self._drop(name)
        if self.tracker is not None:
            self.tracker.close()
            self.tracker = None


def process_rss() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
