"""Scan routes: sizes (cached or fresh), refresh, bulk scans, scan status, methods."""

from __future__ import annotations

import json
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from quart import Blueprint, request
from quart_schema import document_request, validate_response

from common.messages import ScanMethod, utc_now
from services.gateway.api.models import (
    BulkScanOut,
    BulkScanRequest,
    RefreshRequest,
    ScanAcceptedOut,
    ScanJobOut,
    ScanMethodsOut,
    ScanResponseOut,
)
from services.gateway.api.volumes import find_volume, resolve_path_volume
from services.gateway.http.errors import ApiError, rate_limited
from services.gateway.http.openapi_doc import document_errors
from services.gateway.readmodel.views import result_json
from services.gateway.runtime import runtime
from services.gateway.scans.jobs import Job, job_json
from services.gateway.scans.methods import scan_methods

blueprint = Blueprint("scans", __name__, url_prefix="/api/v1")
blueprint.url_value_preprocessor(resolve_path_volume)  # a volume named with ?host=

# HTTP status for a scan that ended in an error, by code.
ERROR_STATUS: dict[str, int] = {
    "VOLUME_NOT_FOUND": 404,
    "SCAN_PERMISSION_ERROR": 403,
    "SCAN_PATH_ERROR": 422,
    "SCAN_TIMEOUT": 504,
    "SCANNER_UNAVAILABLE": 503,
    "SCAN_WORKER_LOST": 502,
    "SCAN_FAILED": 500,
}

MAX_BODY_BYTES = 1 << 20

ModelT = TypeVar("ModelT", bound=BaseModel)


async def _optional_json_body() -> dict[str, Any]:
    """An empty body (with or without a JSON content type) means the defaults."""
    raw = await request.get_data(cache=False)
    if len(raw) > MAX_BODY_BYTES:
        raise ApiError(413, "PAYLOAD_TOO_LARGE", "request body too large")
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except ValueError as error:
        raise ApiError(400, "INVALID_JSON", f"request body is not valid JSON: {error}") from None
    except RecursionError:
        raise ApiError(400, "INVALID_JSON", "request body is nested too deeply") from None
    if not isinstance(body, dict):
        raise ApiError(400, "INVALID_REQUEST", "request body must be a JSON object")
    return body


def _validated(model: type[ModelT], body: dict[str, Any]) -> ModelT:
    try:
        return model.model_validate(body)
    except ValidationError as error:
        first = error.errors(include_url=False)[0]
        where = ".".join(str(part) for part in first["loc"]) or "body"
        raise ApiError(400, "INVALID_REQUEST", f"invalid {where}: {first['msg']}") from None


def limit_scan_requests() -> None:
    """429 with Retry-After for a client past its share of scan-starting requests."""
    client = request.remote_addr or "unknown"
    wait = runtime().scan_limiter.retry_after(client)
    if wait:
        raise rate_limited("too many scan requests", wait)


def accepted(job: Job) -> tuple[dict[str, Any], int]:
    return {
        "scan_id": job.row.scan_id,
        "volume_id": job.row.volume_id,
        "status": job.row.status,
        "status_url": f"/api/v1/scans/{job.row.scan_id}",
    }, 202


def outcome(job: Job) -> dict[str, Any]:
    """A finished job as a ScanResponse, or its failure as the contract's error."""
    row = job.row
    if row.result is not None:
        return {
            "volume_id": row.volume_id,
            "cached": False,
            "result": result_json(row.result, cache_hit=False),
        }
    failure = row.failure
    assert failure is not None
    raise ApiError(
        ERROR_STATUS.get(failure.code, 500),
        failure.code,
        failure.message,
        details={"scan_id": row.scan_id},
    )


async def scan_and_wait(volume_id: str, method: ScanMethod) -> tuple[dict[str, Any], int]:
    state = runtime()
    job = await state.scans.request(volume_id, method)
    if await state.scans.wait(job, state.settings.sync_scan_timeout_seconds):
        return outcome(job), 200
    return accepted(job)


# Errors of a route that may scan: bad id, unknown volume, rate limit, and the scan's own.
SCAN_ERRORS = (400, 403, 404, 422, 429, 500, 502, 503, 504, 507)


@blueprint.get("/volumes/<volume_id>/size")
@validate_response(ScanResponseOut, 200)
@validate_response(ScanAcceptedOut, 202)
@document_errors(*SCAN_ERRORS)
async def volume_size(volume_id: str) -> tuple[dict[str, Any], int]:
    state = runtime()
    find_volume(volume_id)
    latest = state.catalog.latest_result(volume_id)
    if latest is not None:
        age = (utc_now() - latest.scanned_at).total_seconds()
        if age < state.settings.scan_cache_ttl_seconds:
            return {
                "volume_id": volume_id,
                "cached": True,
                "result": result_json(latest, cache_hit=True),
            }, 200
    limit_scan_requests()
    return await scan_and_wait(volume_id, "native")


@blueprint.post("/volumes/<volume_id>/size/refresh")
@document_request(RefreshRequest)
@validate_response(ScanResponseOut, 200)
@validate_response(ScanAcceptedOut, 202)
@document_errors(*SCAN_ERRORS, 413)
async def refresh_volume_size(volume_id: str) -> tuple[dict[str, Any], int]:
    """Always a new scan; the body is optional (empty means the defaults)."""
    find_volume(volume_id)
    body = _validated(RefreshRequest, await _optional_json_body())
    limit_scan_requests()
    if body.async_:
        return accepted(await runtime().scans.request(volume_id, body.scan_method))
    return await scan_and_wait(volume_id, body.scan_method)


@blueprint.post("/volumes/bulk-scan")
@document_request(BulkScanRequest)
@validate_response(BulkScanOut, 202)
@document_errors(400, 404, 413, 429, 503)
async def bulk_scan() -> tuple[dict[str, Any], int]:
    """Scan a list of volumes, or all of them; always asynchronous."""
    state = runtime()
    body = _validated(BulkScanRequest, await _optional_json_body())
    if body.all == (body.volume_ids is not None):
        raise ApiError(400, "INVALID_REQUEST", "give either volume_ids or all: true")
    names = state.catalog.names() if body.all else list(dict.fromkeys(body.volume_ids or []))
    for name in names:
        find_volume(name)  # all or nothing: an unknown id fails the whole request
    limit_scan_requests()
    scan_ids = {}
    for name in names:
        job = await state.scans.request(name, body.scan_method)
        scan_ids[name] = job.row.scan_id
    return {"scan_ids": scan_ids, "total": len(scan_ids)}, 202


@blueprint.get("/scans/<scan_id>")
@blueprint.get("/scans/<scan_id>/status")
@validate_response(ScanJobOut, 200)
@document_errors(404)
async def scan_status(scan_id: str) -> dict[str, Any]:
    found = await runtime().scans.get(scan_id) if len(scan_id) <= 64 else None
    if found is None:
        raise ApiError(404, "SCAN_NOT_FOUND", f"scan {scan_id[:64]!r} not found")
    row, live = found
    return job_json(row, live)


@blueprint.get("/scan-methods")
@validate_response(ScanMethodsOut, 200)
async def list_scan_methods() -> dict[str, Any]:
    methods = scan_methods()
    return {"methods": methods, "total": len(methods)}
