"""The read model: the watcher's volume set merged with the latest stored scan results.

Volume objects are built once per change, not per request, so listing stays cheap.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from common.messages import ScanResultData, VolumeRecord

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
    result: ScanResultData | None
    json: dict[str, Any]
    is_system: bool
    search_text: str  # lower-cased name, label keys and values, for `q`

    @classmethod
    def build(cls, record: VolumeRecord, result: ScanResultData | None) -> VolumeView:
        attachments = len(record.attachments)
        system = is_system_volume(record)
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
            "size_bytes": result.total_size if result else None,
            "disk_usage_bytes": result.disk_usage if result else None,
            "file_count": result.file_count if result else None,
            "last_scan_at": rfc3339(result.scanned_at) if result else None,
            # Where the figures come from: a walk (native), du, or nothing yet.
            "size_source": (
                {"native": "walk"}.get(result.method, result.method) if result else None
            ),
            "attachments_count": attachments,
            "is_orphaned": attachments == 0,
            "is_system": system,
            "is_active": True,
            "status": "active",
        }
        words = [record.name, *record.labels.keys(), *record.labels.values()]
        return cls(record, result, body, system, "\n".join(words).lower())

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


ChangeListener = Callable[[], None]


def _view_name(view: VolumeView) -> str:
    return view.record.name


MembershipListener = Callable[[frozenset[str], frozenset[str]], None]


class VolumeCatalog:
    """What the gateway knows: volumes (from the watcher) and latest results (from the store)."""

    def __init__(self) -> None:
        self._records: dict[str, VolumeRecord] = {}
        self._results: dict[str, ScanResultData] = {}
        self._views: dict[str, VolumeView] = {}
        self._ordered: list[VolumeView] = []
        self._listeners: list[ChangeListener] = []
        self._membership_listeners: list[MembershipListener] = []
        self.has_state = False
        self.engine_volumes_dir: str | None = None  # last the watcher reported; for scans
        self.version = 0  # bumped on every visible change (caches key on it)

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
            self._put_view(VolumeView.build(record, self._results.get(record.name)))
            changed = True
        if not changed:
            return False
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
        self._records = incoming
        self._views = {name: self._reuse_or_build(record) for name, record in incoming.items()}
        self._changed()
        if added or removed:
            for listener in self._membership_listeners:
                listener(added, removed)
        return True

    def _reuse_or_build(self, record: VolumeRecord) -> VolumeView:
        old = self._views.get(record.name)
        result = self._results.get(record.name)
        if old is not None and old.record == record and old.result == result:
            return old
        return VolumeView.build(record, result)

    def set_result(self, result: ScanResultData) -> None:
        current = self._results.get(result.volume_id)
        if current is not None and current.scanned_at > result.scanned_at:
            return
        if self.has_state and result.volume_id not in self._records:
            return  # removed while it was scanned: stored, but not held in memory
        self._results[result.volume_id] = result
        record = self._records.get(result.volume_id)
        if record is not None:
            self._put_view(VolumeView.build(record, result))
            self._changed(reorder=False)

    def load_results(self, results: list[ScanResultData]) -> None:
        for result in results:
            current = self._results.get(result.volume_id)
            if current is None or current.scanned_at <= result.scanned_at:
                self._results[result.volume_id] = result

    def get(self, volume_id: str) -> VolumeView | None:
        return self._views.get(volume_id)

    def latest_result(self, volume_id: str) -> ScanResultData | None:
        return self._results.get(volume_id)

    def result_count(self) -> int:
        """Results held in memory: one per volume the engine has (and was scanned)."""
        return len(self._results)

    def views(self) -> list[VolumeView]:
        """Every volume, ordered by name."""
        return self._ordered

    def names(self) -> list[str]:
        return [view.record.name for view in self._ordered]
