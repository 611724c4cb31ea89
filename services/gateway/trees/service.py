"""The trees of each volume, read from the store and kept indexed for a while."""

from __future__ import annotations

from collections import OrderedDict

from services.gateway.storage.store import Store
from services.gateway.storage.trees import StoredTree
from services.gateway.trees.errors import NoTreeYet
from services.gateway.trees.index import TreeIndex

# Indexed trees kept in memory (a tree document is at most about 1 MB).
CACHED_TREES = 32


class Trees:
    def __init__(self, store: Store) -> None:
        self.store = store
        self._cache: OrderedDict[str, tuple[StoredTree, TreeIndex]] = OrderedDict()

    async def kept(self, volume_id: str) -> list[tuple[StoredTree, TreeIndex]]:
        """The volume's trees, latest first; raises NoTreeYet when it has none."""
        ids = await self.store.tree_ids(volume_id)
        if not ids:
            raise NoTreeYet(
                f"volume {volume_id!r} has no directory tree yet: scan it with the native "
                "method (du keeps none)"
            )
        if any(scan_id not in self._cache for scan_id in ids):
            for stored in await self.store.trees(volume_id):
                self._remember(stored.scan_id, (stored, TreeIndex(stored.tree)))
        found = []
        for scan_id in ids:
            entry = self._cache.get(scan_id)
            if entry is not None:
                self._cache.move_to_end(scan_id)
                found.append(entry)
        if not found:  # replaced between the two reads: the newest is there now
            raise NoTreeYet(f"volume {volume_id!r} has no directory tree yet")
        return found

    def _remember(self, scan_id: str, entry: tuple[StoredTree, TreeIndex]) -> None:
        self._cache[scan_id] = entry
        self._cache.move_to_end(scan_id)
        while len(self._cache) > CACHED_TREES:
            self._cache.popitem(last=False)
