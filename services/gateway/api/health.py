"""Health: one check per part (docker, watcher, scanners, database) and the two probes."""

from __future__ import annotations

from typing import Any

from quart import Blueprint
from quart_schema import security_scheme, validate_response

from services.gateway.api.models import HealthOut, ProbeOut
from services.gateway.hosts.intake import AgentIntake
from services.gateway.readmodel.views import rfc3339
from services.gateway.runtime import GatewayRuntime, runtime

blueprint = Blueprint("health", __name__, url_prefix="/api/v1")

VERSION = "0.1.0"


def _check(
    ok: bool, message: str, age: float | None = None, *, degraded: bool = False
) -> dict[str, Any]:
    status = "down" if not ok else "degraded" if degraded else "ok"
    return {"status": status, "message": message, "age_seconds": age}


def _scanners_check(state: GatewayRuntime) -> dict[str, Any]:
    alive, busy = state.broker.alive_count(), state.broker.busy_count()
    message = f"{alive} workers alive, {busy} busy"
    stuck_workers = state.broker.stuck_workers()
    if stuck_workers:
        held = ", ".join(
            f"{w.worker_id} on {w.stuck.volume_id}" for w in stuck_workers if w.stuck is not None
        )
        message += f"; {len(stuck_workers)} abandoned in a hung filesystem ({held})"
    stuck_volumes = state.scans.stuck.as_json()
    if stuck_volumes:
        names = ", ".join(str(stuck["volume_id"]) for stuck in stuck_volumes)
        message += f"; {len(stuck_volumes)} volumes stuck, retried with back-off ({names})"
    return _check(alive > 0, message, degraded=bool(stuck_workers or stuck_volumes))


async def health_checks(state: GatewayRuntime) -> dict[str, dict[str, Any]]:
    limit = state.settings.liveness_timeout_seconds
    watcher_age = state.state.watcher_age_seconds()
    watcher_ok = watcher_age is not None and watcher_age <= limit
    engine = state.state.engine
    database_ok = await state.store.ping()
    return {
        "docker": _check(
            watcher_ok and engine.reachable,
            "engine reachable" if engine.reachable else (engine.error or "engine unreachable"),
        ),
        "watcher": _check(
            watcher_ok,
            "heartbeat current" if watcher_ok else "no heartbeat from the watcher",
            None if watcher_age is None else round(watcher_age, 3),
        ),
        "scanners": _scanners_check(state),
        "live_sizes": _live_check(state),
        "database": _check(
            database_ok and state.store.write_problem is None,
            _database_message(state, database_ok),
        ),
        **({"hosts": _hosts_check(state.state)} if isinstance(state.state, AgentIntake) else {}),
    }


def _hosts_check(intake: AgentIntake) -> dict[str, Any]:
    """Many hosts: which agents are silent (their volumes shown as last heard)."""
    silent = intake.silent_hosts()
    message = f"{len(intake.hosts) - len(silent)} of {len(intake.hosts)} hosts heard"
    if silent:
        message += "; silent: " + ", ".join(
            f"{host.host} (last contact {rfc3339(host.last_contact_at)})"
            if host.last_contact_at
            else f"{host.host} (never heard)"
            for host in silent
        )
    return _check(len(silent) < len(intake.hosts), message, degraded=bool(silent))


def _live_check(state: GatewayRuntime) -> dict[str, Any]:
    fine, message = state.live.summary()
    return _check(True, message, degraded=not fine)


def _database_message(state: GatewayRuntime, ok: bool) -> str:
    if not ok:
        return "cannot query the store"
    if state.store.write_problem is not None:
        return f"readable, but writes fail: {state.store.write_problem}"
    if state.store.moved_aside is not None:
        return (
            "writable; the database found at start was unreadable and was moved to "
            f"{state.store.moved_aside}, a new one was created"
        )
    return "writable"


@blueprint.get("/health")
@validate_response(HealthOut, 200)
@validate_response(HealthOut, 503)
async def health() -> tuple[dict[str, Any], int]:
    state = runtime()
    checks = await health_checks(state)
    if checks["database"]["status"] != "ok" and state.store.write_problem is None:
        status = "unhealthy"  # not even readable
    elif all(check["status"] == "ok" for check in checks.values()):
        status = "healthy"
    else:
        status = "degraded"
    body = {"status": status, "checks": checks, "version": VERSION}
    return body, 503 if status == "unhealthy" else 200


@blueprint.get("/health/live")
@security_scheme([])  # the one route that never needs the API token
@validate_response(ProbeOut, 200)
async def live() -> dict[str, Any]:
    return {"status": "alive"}


@blueprint.get("/health/ready")
@validate_response(ProbeOut, 200)
@validate_response(ProbeOut, 503)
async def ready() -> tuple[dict[str, Any], int]:
    state = runtime()
    if state.catalog.has_state and await state.store.ping():
        return {"status": "ready"}, 200
    return {"status": "not ready"}, 503
