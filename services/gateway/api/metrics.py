"""`GET /metrics`: the Prometheus text exposition of the gateway's registry."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from quart import Blueprint, Response
from quart_schema import hide

from services.gateway.runtime import runtime

blueprint = Blueprint("metrics", __name__)


@blueprint.get("/metrics")
@hide
async def metrics() -> Response:
    body = generate_latest(runtime().metrics.registry)
    return Response(body, status=200, content_type=CONTENT_TYPE_LATEST)
