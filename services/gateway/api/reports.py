"""Reports: orphaned volumes (no container mounts them), largest first, with the total."""

from __future__ import annotations

from typing import Any

from quart import Blueprint
from quart_schema import validate_querystring, validate_response

from services.gateway.api.models import OrphanedReportOut, OrphanedReportQuery
from services.gateway.http.openapi_doc import document_errors
from services.gateway.readmodel.listing import list_page
from services.gateway.runtime import runtime

blueprint = Blueprint("reports", __name__, url_prefix="/api/v1")


@blueprint.get("/reports/orphaned")
@validate_querystring(OrphanedReportQuery)
@validate_response(OrphanedReportOut, 200)
@document_errors(400)
async def orphaned_report(query_args: OrphanedReportQuery) -> dict[str, Any]:
    """Paged like `/volumes` (same filters; `orphaned` is always true), sorted by size."""
    query = query_args.model_copy(update={"orphaned": True})
    matches, page, envelope = list_page(runtime().catalog, query)
    scanned = [view.result for view in matches if view.result is not None]
    return {
        "data": [view.json for view in page],
        **envelope,
        "total_size_bytes": sum(result.total_size for result in scanned),
        "total_disk_usage_bytes": sum(result.disk_usage for result in scanned),
        "unscanned": len(matches) - len(scanned),
    }
