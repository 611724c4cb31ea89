"""The volumes the tracker follows, and what it does with each batch of events.

The gateway names the volumes (LiveFollow); a volume is followed only when its mountpoint
is `<volumes_dir>/<name>/_data` on the filesystem the change tracker marks, since the
tracker places events by that path. A volume is another one when it was made again under
its name (`created_at`). Each volume is read in full when the host's load allows (the same
throttle as scans), in steps, after the filesystem mark is set, so nothing that changes
during the read is missed: its events are held and looked at once the read is done. Lost
events (the queue overflowed, a handle that could not be resolved) make every followed
volume stale: each is read again, from a freshly opened root, one at a time through the
throttle, and its figures say `stale` until then. Nothing here touches the bus.
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
from services.scanner.live.counters import EventRate
from services.scanner.live.figures import SharedInodes
from services.scanner.live.volume import LiveVolume, NotFollowable

log = logging.getLogger(__name__)

TrackerOpener = Callable[[str], ChangeTracker]


@dataclass(slots=True)
class _Followed:
    volume: LiveVolume
    updated_at: datetime


@dataclass(slots=True)
class _Reading:
    """A full read in progress, in steps; the events for it wait here until it is done."""

    name: str
    volume: LiveVolume  # new, on a root opened again: it replaces any followed one
    steps: Iterator[None]
    started: float
    held: dict[str, set[str]] = field(default_factory=dict)


class Following:
    def __init__(
        self,
        scan_roots: Sequence[str],
        is_busy: Callable[[], bool],
        opener: TrackerOpener = open_tracker,
        tick: Callable[[], None] = lambda: None,
    ) -> None:
        self._scan_roots = list(scan_roots)
        self._is_busy = is_busy
        self._opener = opener
        self._tick = tick  # the caller's clock, kept running through long reads
        self.tracker: ChangeTracker | None = None
        self.mode: LiveMode = "starting"
        self.reason: str | None = None
        self._may_pass = False  # unavailable for a reason that may pass: retry() tries again
        self.follow_version = -1
        self._volumes_dir: str | None = None
        self._last_follow: LiveFollow | None = None
        self._targets: dict[str, LiveTarget] = {}  # followable volumes
        self._not_followable: dict[str, str] = {}  # volume -> why
        self._live: dict[str, _Followed] = {}
        self._stale: set[str] = set()  # followed, figures not exact: waiting for a read
        self._pending: deque[str] = deque()  # to read in full, first or again
        self._reading: _Reading | None = None
        self._shared = SharedInodes()
        self._changed: set[str] = set()  # figures to send
        self._unfollowed: set[str] = set()  # to tell the gateway
        self._complete = False  # the next sizes sent are every followed volume's
        self.rate = EventRate()
        self.resyncs_total = 0
        # The followed directories, summed again only after a change: the status goes out
        # every heartbeat, and a sum over thousands of idle volumes was most of its cost.
        self._directories: int | None = None

    # --- what the gateway asks --------------------------------------------------------

    def apply(self, follow: LiveFollow) -> None:
        self.follow_version = follow.version
        self._last_follow = follow
        if follow.volumes_dir != self._volumes_dir or self.mode == "starting":
            self._open(follow.volumes_dir)
        wanted: dict[str, LiveTarget] = {}
        self._not_followable.clear()
        for target in follow.volumes:
            why = self._why_not(target)
            if why is None:
                wanted[target.volume_id] = target
            else:
                self._not_followable[target.volume_id] = why
        for name in [name for name in self._targets if wanted.get(name) != self._targets[name]]:
            self._drop(name)  # gone, moved, or made again under its name
        for name, target in wanted.items():
            if name not in self._targets:
                self._targets[name] = target
                self._pending.append(name)
        stale = [name for name in follow.resync if self._make_stale(name)]
        if stale:
            log.warning("live volumes stale, reading again volume_ids=%s reason=walk", stale)

    def retry(self) -> None:
        """While unavailable for a reason that may pass (the directory not made yet, out of
        descriptors): try the tracker again, with the last follow set."""
        if self.mode == "unavailable" and self._may_pass and self._last_follow is not None:
            self.mode = "starting"
            self.apply(self._last_follow)

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
        except (TrackerUnavailable, OSError) as error:
            # No privilege or no kernel support stays so; a missing directory may not.
            self._may_pass = not isinstance(error, TrackerUnavailable)
            reason = str(error) if isinstance(error, TrackerUnavailable) else error.strerror
            self.mode, self.reason = "unavailable", f"{volumes_dir}: {reason}"
            log.warning("live sizes unavailable volumes_dir=%s reason=%s", volumes_dir, reason)
            return
        self.mode, self.reason = self.tracker.mode, self.tracker.reason
        log.info(
            "live sizes following volumes_dir=%s mode=%s reason=%s",
            volumes_dir,
            self.mode,
            self.reason or "-",
        )

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
            self._reading.volume.close()
            self._reading = None
        followed = self._live.pop(name, None)
        if followed is not None:
            followed.volume.close()
            self._unfollowed.add(name)
            self._directories = None
        self._stale.discard(name)
        self._changed.discard(name)
        if name in self._pending:
            self._pending.remove(name)

    def _make_stale(self, name: str, *, resync: bool = True) -> bool:
        """Read it again (its figures say stale meanwhile); False if not followed.
        `resync`: because its figures may be wrong (counted in resyncs_total)."""
        if name not in self._live or name in self._stale:
            return False
        self._stale.add(name)
        self._changed.add(name)
        if self._reading is None or self._reading.name != name:
            self._pending.append(name)
        self.resyncs_total += resync
        return True

    def resend_all(self) -> None:
        self._changed |= self._live.keys()
        self._complete = True

    # --- events -----------------------------------------------------------------------

    def take_events(self) -> int:
        """Apply every event waiting in the kernel's queue; how many there were."""
        if self.tracker is None:
            return 0
        changes = self.tracker.read()
        self.rate.count(changes.events)
        if changes.overflowed:
            self._restart_reading()
            stale = [name for name in list(self._live) if self._make_stale(name)]
            log.warning("events were lost, reading again volumes=%d", len(stale))
            return changes.events
        self._refresh(changes)
        return changes.events

    def _restart_reading(self) -> None:
        """What the read in progress has read may have missed a change: start it over."""
        reading = self._reading
        if reading is not None:
            self._reading = None
            reading.volume.close()
            self._pending.appendleft(reading.name)

    def _refresh(self, changes: Changes) -> None:
        now = utc_now()
        reading = self._reading
        if changes.entries:
            self._directories = None
        for name, entries in changes.entries.items():
            if reading is not None and name == reading.name:
                for directory, names in entries.items():
                    reading.held.setdefault(directory, set()).update(names)
                continue
            followed = self._live.get(name)
            if followed is None or name in self._stale:
                continue  # not read yet, or to be read again: that read will see it
            if followed.volume.root_gone():
                self._make_stale(name, resync=False)  # read from its root opened anew
                log.info("live volume made again under its name volume_id=%s", name)
                continue
            try:
                followed.volume.refresh(entries)
            except NotFollowable as error:
                self._give_up(name, str(error))
                continue
            except OSError as error:  # a directory unreadable halfway: read it all again
                log.warning("live volume refresh failed volume_id=%s error=%s", name, error)
                self._make_stale(name)
                continue
            followed.updated_at = now
            self._changed.add(name)
        shared = self._shared
        if shared.changed or shared.recounted:
            # A hard link may join volumes: a write through one changes the other's figures.
            for name, followed in self._live.items():
                if name not in self._changed and (
                    followed.volume in shared.recounted or followed.volume.holds_any(shared.changed)
                ):
                    followed.updated_at = now
                    self._changed.add(name)
            shared.changed.clear()
            shared.recounted.clear()

    def _give_up(self, name: str, why: str) -> None:
        self._not_followable[name] = why
        self._drop(name)
        log.warning("live volume not followed volume_id=%s reason=%s", name, why)

    # --- full reads -------------------------------------------------------------------

    def has_pending(self) -> bool:
        return bool(self._pending) or self._reading is not None

    def read_step(self) -> bool:
        """One step of the current full read (or the start of the next), unless the host
        is busy; True when there was one to take."""
        if not self.has_pending() or self._is_busy():
            return False  # nothing to read costs no look at the host's load
        if self._reading is None and not self._start_reading():
            return False
        reading = self._reading
        assert reading is not None
        try:
            next(reading.steps)
            return True
        except StopIteration:
            pass
        except (NotFollowable, OSError) as error:  # too deep, or the root went unreadable
            self._give_up(reading.name, str(error))
            return True
        self._reading = None
        reading.volume.refresh(reading.held)  # what changed while it was read
        old = self._live.get(reading.name)
        self._live[reading.name] = _Followed(reading.volume, utc_now())
        if old is not None:
            old.volume.close()
        self._stale.discard(reading.name)
        self._changed.add(reading.name)
        self._directories = None
        log.info(
            "live volume read volume_id=%s directories=%d elapsed_ms=%d",
            reading.name,
            reading.volume.directories(),
            (time.monotonic() - reading.started) * 1000,
        )
        return True

    def _start_reading(self) -> bool:
        """Open the next waiting volume's root again (it may have been made anew)."""
        while self._pending:
            name = self._pending.popleft()
            target = self._targets.get(name)
            if target is None:
                continue
            try:
                fd = open_confined(target.mountpoint, self._roots())
            except ScanError as error:
                self._give_up(name, str(error))
                continue
            if self.tracker is None or os.fstat(fd).st_dev != self.tracker.device:
                os.close(fd)  # a mount on _data (driver options): no event of ours there
                self._give_up(name, "another filesystem is mounted on it")
                continue
            watch = self.tracker.watch_for(name)
            volume = LiveVolume(fd, self._shared, read=False, tick=self._tick, watch=watch)
            self._reading = _Reading(name, volume, volume.reading(), time.monotonic())
            return True
        return False

    def _roots(self) -> list[str]:
        return allowed_roots(self._scan_roots, self._volumes_dir)

    # --- what the gateway is told -----------------------------------------------------

    def take_sizes(self) -> tuple[list[LiveSize], list[str], bool]:
        """The figures changed since the last call, the volumes no longer followed, and
        whether the figures are every followed volume's (a resend)."""
        sizes = [self._size(name) for name in sorted(self._changed) if name in self._live]
        unfollowed, complete = sorted(self._unfollowed), self._complete
        self._changed.clear()
        self._unfollowed.clear()
        self._complete = False
        return sizes, unfollowed, complete

    def _size(self, name: str) -> LiveSize:
        followed = self._live[name]
        figures = followed.volume.figures()
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
        return bool(self._changed or self._unfollowed or self._complete)

    def counts(self) -> dict[str, int]:
        return {
            "followed": len(self._live) - len(self._stale),
            "pending": len(self._pending) + (self._reading is not None),
            "not_followable": len(self._not_followable),
            "directories": self._followed_directories(),
        }

    def _followed_directories(self) -> int:
        if self._directories is None:
            self._directories = sum(f.volume.directories() for f in self._live.values())
        return self._directories

    def close(self) -> None:
        for name in list(self._targets) + list(self._live):
            self._drop(name)
        if self.tracker is not None:
            self.tracker.close()
            self.tracker = None
