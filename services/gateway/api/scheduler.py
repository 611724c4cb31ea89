"""Scheduler routes: the schedule and its state, and queueing every volume now."""

from __future__ import annotations

from typing import Any

from quart import Blueprint
from quart_schema import validate_response

from services.gateway.api.models import BulkScanOut, SchedulerOut
from services.gateway.http.openapi_doc import document_errors
from services.gateway.runtime import runtime

blueprint = Blueprint("scheduler", __name__, url_prefix="/api/v1")


@blueprint.get("/scheduler")
@validate_response(SchedulerOut, 200)
async def scheduler_status() -> dict[str, Any]:
    state = runtime()
    return {**state.scheduler.status(), "live": state.live.as_json()}


@blueprint.post("/scans/all")
@validate_response(BulkScanOut, 202)
@document_errors(429, 503)
async def scan_all() -> tuple[dict[str, Any], int]:
    scan_ids = await runtime().scheduler.queue_all()
    return {"scan_ids": scan_ids, "total": len(scan_ids)}, 202
