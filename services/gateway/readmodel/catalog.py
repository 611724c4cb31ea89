"""The read model: the watcher's volume set merged with the latest stored scan results
and the live tracker's figures (issue 13): a volume shows whichever is newer.

Volume objects are built once per change, not per request, so listing stays cheap.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from common.messages import LiveSize, ScanResultData, VolumeRecord

_ANONYMOUS = re.compile(r"^[0-9a-f]{64}$")
# Volumes that infrastructure creates for itself rather than a user's application.
_SYSTEM_PREFIXES = ("buildx_buildkit_", "docker-desktop", "docker_desktop", "devcontainer")
_ANONYMOUS_LABEL = "com.docker.volume.anonymous"


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def is_system_volume(record: VolumeRecord) -> bool:
    return (
        bool(_ANONYMOUS.match(record.name))
        or record.name.startswith(_SYSTEM_PREFIXES)
        or _ANONYMOUS_LABEL in record.labels
    )


def result_json(result: ScanResultData, cache_hit: bool) -> dict[str, Any]:
    body = result.model_dump()
    body["scanned_at"] = rfc3339(result.scanned_at)
    body["cache_hit"] = cache_hit
    return body


@dataclass(frozen=True, slots=True)
class VolumeView:
    """One volume as the API shows it, with the values listing sorts and filters on."""

    record: VolumeRecord
    result: ScanResultData | None  # the latest scan's (a walk or du)
    live: LiveSize | None
    json: dict[str, Any]
    is_system: bool
    search_text: str  # lower-cased name, label keys and values, for `q`

    @classmethod
    def build(
        cls, record: VolumeRecord, result: ScanResultData | None, live: LiveSize | None = None
    ) -> VolumeView:
        attachments = len(record.attachments)
        system = is_system_volume(record)
        figures: ScanResultData | LiveSize | None = result
        if live is not None and (result is None or live.updated_at >= result.scanned_at):
            figures = live
        updated_at = (
            figures.updated_at
            if isinstance(figures, LiveSize)
            else figures.scanned_at
            if figures is not None
            else None
        )
        body: dict[str, Any] = {
            "id": record.name,
            "volume_id": record.name,
            "name": record.name,
            "driver": record.driver,
            "mountpoint": record.mountpoint,
            "created_at": rfc3339(record.created_at),
            "scope": record.scope,
            "labels": dict(record.labels),
            "options": dict(record.options),
            "size_bytes": figures.total_size if figures else None,
            "disk_usage_bytes": figures.disk_usage if figures else None,
            "file_count": figures.file_count if figures else None,
            "last_scan_at": rfc3339(result.scanned_at) if result else None,
            # Where the figures come from: a walk (native), du, the tracker, or nothing yet.
            "size_source": _source(figures),
            "size_updated_at": rfc3339(updated_at) if updated_at else None,
            "size_stale": isinstance(figures, LiveSize) and figures.stale,
            "attachments_count": attachments,
            "is_orphaned": attachments == 0,
            "is_system": system,
            "is_active": True,
            "status": "active",
        }
        words = [record.name, *record.labels.keys(), *record.labels.values()]
        return cls(record, result, live, body, system, "\n".join(words).lower())

    def sort_value(self, field: str) -> Any:
        if field == "created_at":
            return self.record.created_at
        if field == "last_scan_at":
            return self.result.scanned_at if self.result else None
        return self.json[field]

    def detail_json(self) -> dict[str, Any]:
        body = dict(self.json)
        body["attachments"] = [item.model_dump() for item in self.record.attachments]
        body["last_scan"] = result_json(self.result, cache_hit=True) if self.result else None
        return body


def _source(figures: ScanResultData | LiveSize | None) -> str | None:
    if figures is None:
        return None
    if isinstance(figures, LiveSize):
        return "live"
    return {"native": "walk"}.get(figures.method, figures.method)


def live_size(result: ScanResultData) -> LiveSize:
    """A stored live point, as the figures it recorded."""
    return LiveSize(
        volume_id=result.volume_id,
        total_size=result.total_size,
        disk_usage=result.disk_usage,
        file_count=result.file_count,
        directory_count=result.directory_count,
        updated_at=result.scanned_at,
    )


ChangeListener = Callable[[], None]


def _view_name(view: VolumeView) -> str:
    return view.record.name


MembershipListener = Callable[[frozenset[str], frozenset[str]], None]


class VolumeCatalog:
    """What the gateway knows: volumes (from the watcher) and latest results (from the store)."""

    def __init__(self) -> None:
        self._records: dict[str, VolumeRecord] = {}
        self._results: dict[str, ScanResultData] = {}
        self._live: dict[str, LiveSize] = {}
        self._views: dict[str, VolumeView] = {}
        self._ordered: list[VolumeView] = []
        self._listeners: list[ChangeListener] = []
        self._membership_listeners: list[MembershipListener] = []
        self.has_state = False
        self.engine_volumes_dir: str | None = None  # last the watcher reported; for scans
        self.version = 0  # bumped on every visible change (caches key on it)
        self.records_version = 0  # bumped when the watcher's records change

    def on_change(self, listener: ChangeListener) -> None:
        self._listeners.append(listener)

    def on_membership(self, listener: MembershipListener) -> None:
        """`listener(added, removed)` when volumes appear or go (removed includes volumes
        known only from stored results, when the first state does not hold them)."""
        self._membership_listeners.append(listener)

    def _changed(self, reorder: bool = True) -> None:
        if reorder:
            self._ordered = [self._views[name] for name in sorted(self._views)]
        self.version += 1
        for listener in self._listeners:
            listener()

    def _position(self, name: str) -> int:
        return bisect.bisect_left(self._ordered, name, key=_view_name)

    def _put_view(self, view: VolumeView) -> None:
        """Install one view, keeping the name order without sorting everything again."""
        name = view.record.name
        at = self._position(name)
        if name in self._views:
            self._ordered[at] = view
        else:
            self._ordered.insert(at, view)
        self._views[name] = view

    def _drop_view(self, name: str) -> None:
        if self._views.pop(name, None) is not None:
            del self._ordered[self._position(name)]

    def apply_delta(self, upserts: Iterable[VolumeRecord], removed: Iterable[str]) -> bool:
        """One change from the watcher (on top of the state before it); True when
        anything visible changed. Costs the changed volumes, not the whole set."""
        self.has_state = True
        gone = frozenset(name for name in removed if name in self._records)
        for name in gone:
            del self._records[name]
            self._results.pop(name, None)  # a removed volume's result leaves memory
            self._live.pop(name, None)
            self._drop_view(name)
        added: set[str] = set()
        changed = bool(gone)
        for record in upserts:
            old = self._records.get(record.name)
            if old == record:
                continue
            if old is None:
                added.add(record.name)
            self._records[record.name] = record
            self._put_view(self._build(record))
            changed = True
        if not changed:
            return False
        self.records_version += 1
        self._changed(reorder=False)
        if added or gone:
            for listener in self._membership_listeners:
                listener(frozenset(added), gone)
        return True

    def replace_volumes(self, records: tuple[VolumeRecord, ...]) -> bool:
        """Install the watcher's whole volume set; True when anything visible changed."""
        self.has_state = True
        incoming = {record.name: record for record in records}
        if incoming == self._records:
            return False
        known = self._records.keys() | self._results.keys()
        added = frozenset(incoming.keys() - self._records.keys())
        removed = frozenset(known - incoming.keys())
        for name in removed:
            self._results.pop(name, None)  # a removed volume's result leaves memory
            self._live.pop(name, None)
        self._records = incoming
        self.records_version += 1
        self._views = {name: self._reuse_or_build(record) for name, record in incoming.items()}
        self._changed()
        if added or removed:
            for listener in self._membership_listeners:
                listener(added, removed)
        return True

    def _reuse_or_build(self, record: VolumeRecord) -> VolumeView:
        old = self._views.get(record.name)
        result, live = self._results.get(record.name), self._live.get(record.name)
        if old is not None and old.record == record and old.result == result and old.live == live:
            return old
        return VolumeView.build(record, result, live)

    def _build(self, record: VolumeRecord) -> VolumeView:
        return VolumeView.build(record, self._results.get(record.name), self._live.get(record.name))

    def set_result(self, result: ScanResultData) -> None:
        current = self._results.get(result.volume_id)
        if current is not None and current.scanned_at > result.scanned_at:
            return
        if self.has_state and result.volume_id not in self._records:
            return  # removed while it was scanned: stored, but not held in memory
        self._results[result.volume_id] = result
        self._rebuild_view(result.volume_id)

    def set_live(self, size: LiveSize) -> bool:
        """The tracker's figures of a volume it follows; False for a volume not known (yet:
        the watcher's state may arrive after them)."""
        if size.volume_id not in self._records:
            return False
        if self._live.get(size.volume_id) != size:
            self._live[size.volume_id] = size
            self._rebuild_view(size.volume_id)
        return True

    def drop_live(self, volume_id: str) -> None:
        """The tracker no longer follows it: its figures come from scans again."""
        if self._live.pop(volume_id, None) is not None:
            self._rebuild_view(volume_id)

    def _rebuild_view(self, volume_id: str) -> None:
        record = self._records.get(volume_id)
        if record is not None:
            self._put_view(self._build(record))
            self._changed(reorder=False)

    def load_results(self, results: list[ScanResultData]) -> None:
        """Stored results at start: scans' and live points, the latest of each kind."""
        for result in results:
            if result.method == "live":
                live = self._live.get(result.volume_id)
                if live is None or live.updated_at <= result.scanned_at:
                    self._live[result.volume_id] = live_size(result)
                continue
            current = self._results.get(result.volume_id)
            if current is None or current.scanned_at <= result.scanned_at:
                self._results[result.volume_id] = result

    def get(self, volume_id: str) -> VolumeView | None:
        return self._views.get(volume_id)

    def latest_result(self, volume_id: str) -> ScanResultData | None:
        """The latest scan's result (live figures are not scans: `live`)."""
        return self._results.get(volume_id)

    def live(self, volume_id: str) -> LiveSize | None:
        return self._live.get(volume_id)

    def result_count(self) -> int:
        """Results held in memory: one per volume the engine has (and was scanned)."""
        return len(self._results)

    def views(self) -> list[VolumeView]:
        """Every volume, ordered by name."""
        return self._ordered

    def names(self) -> list[str]:
        return [view.record.name for view in self._ordered]
