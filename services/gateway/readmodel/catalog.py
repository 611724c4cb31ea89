"""The read model: the watcher's volume set merged with the latest stored scan results
and the live tracker's figures (issue 13): a volume shows whichever is newer.

Volumes are keyed by id (`VolumeRecord.id`): the name on one host; `<host>/<name>` on a
gateway of many hosts (issue 16), where each host's watcher replaces only its own volumes.

Volume objects are built once per change, not per request, so listing stays cheap.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime

from common.messages import LiveSize, ScanResultData, VolumeRecord, split_volume_id
from services.gateway.readmodel.ordering import OrderedViews
from services.gateway.readmodel.views import VolumeView, live_size

ChangeListener = Callable[[], None]

MembershipListener = Callable[[frozenset[str], frozenset[str]], None]
HostListener = Callable[[str], None]


class VolumeCatalog:
    """What the gateway knows: volumes (from the watcher) and latest results (from the store)."""

    def __init__(self) -> None:
        self._records: dict[str, VolumeRecord] = {}
        self._results: dict[str, ScanResultData] = {}
        self._live: dict[str, LiveSize] = {}
        self._views: dict[str, VolumeView] = {}
        self._ordered = OrderedViews()
        self._listeners: list[ChangeListener] = []
        self._membership_listeners: list[MembershipListener] = []
        self.has_state = False
        self.engine_volumes_dir: str | None = None  # last the watcher reported; for scans
        # Many hosts: each host's volumes directory, and since when a host is silent.
        self.host_volumes_dirs: dict[str, str] = {}
        self._silent_hosts: dict[str, datetime] = {}
        self._ids_by_name: dict[str, set[str]] = {}  # a name -> its ids on every host
        self._hosts_with_state: set[str] = set()  # hosts whose watcher's state is in
        self.version = 0  # bumped on every visible change (caches key on it)
        # Bumped when a watcher's records change, per host (None: the one watcher's).
        self._records_versions: dict[str | None, int] = {}
        self.listed_hosts: frozenset[str] = frozenset()  # many hosts: the key file's
        # The ids whose scheduled scan's due time may have moved since the scheduler last
        # took them (take_schedule_changes): the volume came or went, a result, whether
        # live figures vouch for it (not each new live figure).
        self._schedule_changed: set[str] = set()
        self._host_listeners: list[HostListener] = []

    def on_change(self, listener: ChangeListener) -> None:
        self._listeners.append(listener)

    def on_membership(self, listener: MembershipListener) -> None:
        """`listener(added, removed)` when volumes appear or go (removed includes volumes
        known only from stored results, when the first state does not hold them)."""
        self._membership_listeners.append(listener)

    def _changed(self, reorder: bool = True) -> None:
        if reorder:
            self._ordered.rebuild(self._views.values())
        self.version += 1
        for listener in self._listeners:
            listener()

    def _put_view(self, view: VolumeView) -> None:
        """Install one view, keeping the id order without sorting everything again."""
        key = view.record.id
        old = self._views.get(key)
        self._ordered.put(old, view)
        if old is None:
            self._ids_by_name.setdefault(view.record.name, set()).add(key)
        self._views[key] = view

    def _drop_view(self, key: str) -> None:
        view = self._views.pop(key, None)
        if view is not None:
            self._ordered.drop(view)
            self._unindex(view.record)

    def _unindex(self, record: VolumeRecord) -> None:
        ids = self._ids_by_name.get(record.name)
        if ids is not None:
            ids.discard(record.id)
            if not ids:
                del self._ids_by_name[record.name]

    def apply_delta(
        self, upserts: Iterable[VolumeRecord], removed: Iterable[str], host: str | None = None
    ) -> bool:
        """One change from a watcher (on top of the state before it): the records and the
        names removed, of `host`'s engine on a gateway of many hosts. True when anything
        visible changed. Costs the changed volumes, not the whole set."""
        self.has_state = True
        if host is not None:
            self._hosts_with_state.add(host)
            upserts = [record.model_copy(update={"host": host}) for record in upserts]
            removed = [f"{host}/{name}" for name in removed]
        gone = frozenset(key for key in removed if key in self._records)
        for key in gone:
            del self._records[key]
            self._results.pop(key, None)  # a removed volume's result leaves memory
            self._live.pop(key, None)
            self._drop_view(key)
        added: set[str] = set()
        changed = bool(gone)
        for record in upserts:
            key = record.id
            old = self._records.get(key)
            if old == record:
                continue
            if old is None:
                added.add(key)
            self._records[key] = record
            self._put_view(self._build(record))
            changed = True
        if not changed:
            return False
        self._records_changed(host)
        self._schedule_moved(added | gone)
        self._changed(reorder=False)
        if added or gone:
            for listener in self._membership_listeners:
                listener(frozenset(added), gone)
        return True

    def replace_volumes(self, records: tuple[VolumeRecord, ...], host: str | None = None) -> bool:
        """Install a watcher's whole volume set (only `host`'s, on a gateway of many
        hosts); True when anything visible changed."""
        if host is not None:
            held = {view.record.name for view in self.views(host)}
            return self.apply_delta(records, held - {record.name for record in records}, host)
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
        self._records_changed(None)
        self._views = {name: self._reuse_or_build(record) for name, record in incoming.items()}
        self._ids_by_name = {name: {name} for name in incoming}
        self._schedule_moved(added | removed)
        self._changed()
        if added or removed:
            for listener in self._membership_listeners:
                listener(added, removed)
        return True

    def _records_changed(self, host: str | None) -> None:
        self._records_versions[host] = self._records_versions.get(host, 0) + 1

    def _schedule_moved(self, volume_ids: Iterable[str]) -> None:
        self._schedule_changed.update(volume_ids)

    def vouching_changed(self, host: str | None) -> None:
        """`host`'s tracker started or stopped following: whether its live figures vouch
        for their volumes (and so when those are walked) moved, with no figure changed."""
        self._schedule_moved(self.live_ids(host))

    def take_schedule_changes(self) -> set[str]:
        """The ids whose due time may have moved since the last call."""
        changed, self._schedule_changed = self._schedule_changed, set()
        return changed

    def records_version_of(self, host: str | None) -> int:
        """Bumped when `host`'s records change (None: on a gateway of one host)."""
        return self._records_versions.get(host, 0)

    def has_state_of(self, host: str | None) -> bool:
        """`host`'s watcher's state is in (None: the one watcher's)."""
        return self.has_state if host is None else host in self._hosts_with_state

    def volumes_dir_of_host(self, host: str | None) -> str | None:
        """The volumes directory `host`'s engine reported (None: the one engine's)."""
        return self.engine_volumes_dir if host is None else self.host_volumes_dirs.get(host)

    def _reuse_or_build(self, record: VolumeRecord) -> VolumeView:
        old = self._views.get(record.id)
        result, live = self._results.get(record.id), self._live.get(record.id)
        if old is not None and old.record == record and old.result == result and old.live == live:
            return old
        return self._build(record)

    def _build(self, record: VolumeRecord) -> VolumeView:
        key = record.id
        silent = self._silent_hosts.get(record.host) if record.host is not None else None
        return VolumeView.build(record, self._results.get(key), self._live.get(key), silent)

    def set_host_silence(self, host: str, since: datetime | None) -> None:
        """A host's agent fell silent at `since` (None: it is heard again): its volumes
        stay, marked stale with the time of the last contact."""
        if self._silent_hosts.get(host) == since:
            return
        if since is None:
            self._silent_hosts.pop(host, None)
        else:
            self._silent_hosts[host] = since
        for view in list(self.views(host)):
            self._put_view(self._build(view.record))
        self._changed(reorder=False)

    def on_host_forgotten(self, listener: HostListener) -> None:
        self._host_listeners.append(listener)

    def list_hosts(self, hosts: frozenset[str]) -> None:
        """The hosts the key file lists now; a host no longer listed left the fleet: its
        volumes leave too (and its jobs waiting for it end)."""
        gone, self.listed_hosts = self.listed_hosts - hosts, hosts
        for host in sorted(gone):
            self.replace_volumes((), host)
            self._hosts_with_state.discard(host)
            self.host_volumes_dirs.pop(host, None)
            self._silent_hosts.pop(host, None)
            for listener in self._host_listeners:
                listener(host)

    def may_come(self, volume_id: str) -> bool:
        """On a gateway of many hosts: an id not here now of a listed host whose state is
        not in yet (restored jobs wait for it rather than fail)."""
        host, _ = split_volume_id(volume_id)
        return host in self.listed_hosts and host not in self._hosts_with_state

    def ids_named(self, name: str) -> set[str]:
        """The ids of every volume called `name` (one per host that has one)."""
        return self._ids_by_name.get(name, set())

    def volumes_dir_of(self, volume_id: str) -> str | None:
        """The volumes directory of the engine holding the volume (scans are confined to)."""
        record = self._records.get(volume_id)
        return self.volumes_dir_of_host(record.host if record is not None else None)

    def set_result(self, result: ScanResultData) -> None:
        current = self._results.get(result.volume_id)
        if current is not None and current.scanned_at > result.scanned_at:
            return
        if self.has_state and result.volume_id not in self._records:
            return  # removed while it was scanned: stored, but not held in memory
        self._results[result.volume_id] = result
        self._schedule_moved((result.volume_id,))
        self._rebuild_view(result.volume_id)

    def set_live(self, size: LiveSize) -> bool:
        """The tracker's figures of a volume it follows; False for a volume not known (yet:
        the watcher's state may arrive after them)."""
        if size.volume_id not in self._records:
            return False
        old = self._live.get(size.volume_id)
        if old != size:
            if old is None or old.stale != size.stale:
                self._schedule_moved((size.volume_id,))
            self._live[size.volume_id] = size
            self._rebuild_view(size.volume_id)
        return True

    def live_ids(self, host: str | None = None) -> list[str]:
        """The volumes with live figures (of `host` only, if given)."""
        if host is None:
            return list(self._live)
        return [volume_id for volume_id in self._live if split_volume_id(volume_id)[0] == host]

    def stale_live(self, host: str | None = None) -> None:
        """No tracker vouches for the live figures (of `host`, if given) any more: it was
        lost, or restarted."""
        for volume_id in self.live_ids(host):
            live = self._live[volume_id]
            if not live.stale:
                self._live[volume_id] = live.model_copy(update={"stale": True})
                self._schedule_moved((volume_id,))
                self._rebuild_view(volume_id)

    def drop_live(self, volume_id: str) -> None:
        """The tracker no longer follows it: its figures come from scans again."""
        if self._live.pop(volume_id, None) is not None:
            self._schedule_moved((volume_id,))
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

    def views(self, host: str | None = None, include_system: bool = True) -> list[VolumeView]:
        """Every volume (of `host`, if given; without system volumes, if asked), ordered
        by name (then id: host). The catalog's own list: read it, never change it."""
        return self._ordered.select(host, include_system)

    def names(self) -> list[str]:
        """Every volume's id, in order."""
        return [view.record.id for view in self._ordered.select()]
