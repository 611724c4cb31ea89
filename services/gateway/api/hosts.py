"""Hosts: every Docker host the gateway follows (one, or each agent's on a gateway of many
hosts), with its engine's state, its agent's heartbeat age, its volumes and their size."""

from __future__ import annotations

from typing import Any

from quart import Blueprint
from quart_schema import validate_response

from services.gateway.api.models import HostListOut
from services.gateway.hosts.summary import hosts_json
from services.gateway.runtime import runtime

blueprint = Blueprint("hosts", __name__, url_prefix="/api/v1")


@blueprint.get("/hosts")
@validate_response(HostListOut, 200)
async def list_hosts() -> dict[str, Any]:
    state = runtime()
    data = hosts_json(
        state.state, state.catalog, state.broker, state.settings.liveness_timeout_seconds
    )
    return {"data": data, "total": len(data), "multi_host": state.settings.multi_host}
