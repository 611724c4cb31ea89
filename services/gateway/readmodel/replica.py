"""One watcher's state as the gateway holds it (Clone pattern, the client's side): deltas
applied only on top of the one before (`seq - 1`), snapshots on a new epoch or a gap.

The state client (one watcher on this host) holds one; the agent intake (a gateway of many
hosts, services/gateway/hosts/) holds one per host, which replaces only that host's volumes.
"""

from __future__ import annotations

import logging
import time

from common.messages import EngineStatus, Heartbeat, StateDelta, StateSnapshot
from services.gateway.readmodel.catalog import VolumeCatalog

log = logging.getLogger("gateway.state")


class WatcherReplica:
    def __init__(self, catalog: VolumeCatalog, host: str | None = None) -> None:
        self.catalog = catalog
        self.host = host
        self.epoch: str | None = None
        self.seq = 0
        self.engine = EngineStatus(reachable=False, error="no state from the watcher yet")

    def _note_engine(self, engine: EngineStatus) -> None:
        self.engine = engine
        if engine.volumes_dir is None:
            return
        if self.host is None:
            self.catalog.engine_volumes_dir = engine.volumes_dir
        else:
            self.catalog.host_volumes_dirs[self.host] = engine.volumes_dir

    def apply_snapshot(self, snapshot: StateSnapshot) -> bool:
        """False for a stale or duplicate one."""
        same_epoch = snapshot.epoch == self.epoch
        if same_epoch and snapshot.seq <= self.seq:
            return False
        if not same_epoch:
            log.info(
                "watcher epoch=%s seq=%d (was epoch=%s) host=%s",
                snapshot.epoch,
                snapshot.seq,
                self.epoch,
                self.host or "-",
            )
        self.epoch, self.seq = snapshot.epoch, snapshot.seq
        self._note_engine(snapshot.engine)
        changed = self.catalog.replace_volumes(snapshot.volumes, self.host)
        log.debug(
            "applied state seq=%d volumes=%d changed=%s host=%s",
            snapshot.seq,
            len(snapshot.volumes),
            changed,
            self.host or "-",
        )
        return True

    def apply_delta(self, delta: StateDelta) -> bool:
        """Apply a delta that follows ours; False when it cannot be (a snapshot is needed)."""
        if delta.epoch == self.epoch and delta.seq <= self.seq:
            return True  # stale or duplicate: nothing to do, nothing missing
        if delta.epoch != self.epoch or delta.seq != self.seq + 1:
            log.info(
                "state delta out of order seq=%d after=%d host=%s",
                delta.seq,
                self.seq,
                self.host or "-",
            )
            return False
        started = time.process_time()
        self.seq = delta.seq
        self._note_engine(delta.engine)
        changed = self.catalog.apply_delta(delta.upserts, delta.removed, self.host)
        log.info(
            "applied delta host=%s seq=%d upserts=%d removed=%d changed=%s cpu_ms=%.3f",
            self.host or "-",
            delta.seq,
            len(delta.upserts),
            len(delta.removed),
            changed,
            (time.process_time() - started) * 1000,
        )
        return True

    def note_heartbeat(self, beat: Heartbeat) -> bool:
        """True when the heartbeat shows we are behind (a new epoch, or a seq ahead)."""
        if beat.engine is not None and beat.instance == self.epoch:
            self._note_engine(beat.engine)
        return beat.instance != self.epoch or beat.seq > self.seq
