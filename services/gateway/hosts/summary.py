"""What `GET /api/v1/hosts` and health say of each host: its engine, its agent's silence,
its volumes and their size. On one host, the one watcher's."""

from __future__ import annotations

import functools
from datetime import datetime
from typing import Any

from common.messages import EngineStatus
from services.gateway.hosts.intake import AgentIntake
from services.gateway.readmodel.catalog import VolumeCatalog
from services.gateway.readmodel.state_client import StateClient
from services.gateway.readmodel.views import rfc3339
from services.gateway.scans.broker import ScanBroker


def _host_json(
    host: str | None,
    engine: EngineStatus,
    age: float | None,
    last_contact: datetime | None,
    stale: bool,
    totals: tuple[int, int],
    workers: int,
) -> dict[str, Any]:
    return {
        "host": host,
        "engine_reachable": engine.reachable,
        "engine_error": engine.error,
        "agent_heartbeat_age_seconds": None if age is None else round(age, 3),
        "last_contact_at": rfc3339(last_contact) if last_contact else None,
        "stale": stale,
        "volume_count": totals[0],
        "total_size_bytes": totals[1],
        "scanner_workers": workers,
    }


def _totals(catalog: VolumeCatalog) -> dict[str | None, tuple[int, int]]:
    """(volume count, total size) per host, summed once per catalog version (a pass over
    every volume: 100,000 on a fleet) however often health and /hosts are asked."""
    return _totals_of(catalog, catalog.version)


@functools.lru_cache(maxsize=4)
def _totals_of(catalog: VolumeCatalog, version: int) -> dict[str | None, tuple[int, int]]:
    counts: dict[str | None, list[int]] = {}
    for view in catalog.views():
        entry = counts.setdefault(view.record.host, [0, 0])
        entry[0] += 1
        entry[1] += view.json["size_bytes"] or 0
    return {host: (count, size) for host, (count, size) in counts.items()}


def hosts_json(
    state: StateClient | AgentIntake, catalog: VolumeCatalog, broker: ScanBroker, limit: float
) -> list[dict[str, Any]]:
    """Every host, by name; `limit`: the silence after which an agent counts as lost."""
    totals = _totals(catalog)
    if isinstance(state, StateClient):
        age = state.watcher_age_seconds()
        return [
            _host_json(
                state.host_id,
                state.engine,
                age,
                None,
                age is None or age > limit,
                totals.get(None, (0, 0)),
                broker.alive_count(),
            )
        ]
    return [
        _host_json(
            host.host,
            host.replica.engine,
            state.age_seconds(host),
            host.last_contact_at,
            host.silent or host.heard_at is None,
            totals.get(host.host, (0, 0)),
            broker.workers_of(host.host),
        )
        for host in state.hosts.values()
    ]
