"""The read model: the watcher's volume set merged with the latest stored scan results
and the live tracker's figures (issue 13): a volume shows whichever is newer.

Volume objects are built once per change, not per request, so listing stays cheap.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable

from common.messages import LiveSize, ScanResultData, VolumeRecord
from services.gateway.readmodel.views import VolumeView, live_size

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

    def live_ids(self) -> list[str]:
        return list(self._live)

    def stale_live(self) -> None:
        """No tracker vouches for the live figures any more (it was lost, or restarted)."""
        for volume_id, live in list(self._live.items()):
            if not live.stale:
                self._live[volume_id] = live.model_copy(update={"stale": True})
                self._rebuild_view(volume_id)

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
