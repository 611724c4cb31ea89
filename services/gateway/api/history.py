"""History and forecast routes: a volume's stored points, and where its size is heading."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from quart import Blueprint
from quart_schema import validate_querystring, validate_response

from common.messages import utc_now
from services.gateway.api.models import (
    ForecastOut,
    ForecastQuery,
    HistoryOut,
    HistoryQuery,
)
from services.gateway.api.volumes import find_volume, resolve_path_volume
from services.gateway.history.forecast import forecast
from services.gateway.http.openapi_doc import document_errors
from services.gateway.runtime import runtime

blueprint = Blueprint("history", __name__, url_prefix="/api/v1")
blueprint.url_value_preprocessor(resolve_path_volume)  # a volume named with ?host=


@blueprint.get("/volumes/<volume_id>/history")
@validate_querystring(HistoryQuery)
@validate_response(HistoryOut, 200)
@document_errors(400, 404)
async def volume_history(volume_id: str, query_args: HistoryQuery) -> dict[str, Any]:
    find_volume(volume_id)
    points, total = await runtime().history.points(
        volume_id, query_args.since, query_args.until, query_args.limit
    )
    return {
        "volume_id": volume_id,
        "data": [asdict(point) for point in points],
        "total": total,
        "limit": query_args.limit,
    }


@blueprint.get("/volumes/<volume_id>/forecast")
@validate_querystring(ForecastQuery)
@validate_response(ForecastOut, 200)
@document_errors(400, 404)
async def volume_forecast(volume_id: str, query_args: ForecastQuery) -> dict[str, Any]:
    view = find_volume(volume_id)
    sizes = await runtime().history.sizes(volume_id)
    filesystem = asdict(await runtime().filesystems.space(view.record.mountpoint))
    result = forecast(
        sizes, utc_now(), query_args.days, filesystem["free_bytes"], filesystem["error"]
    )
    return {
        "volume_id": volume_id,
        "days": query_args.days,
        "points": result.points,
        "span_days": result.span_days,
        "current_size_bytes": result.current_size,
        "growth_bytes_per_day": result.growth_bytes_per_day,
        "growth_stderr_bytes_per_day": result.growth_stderr_bytes_per_day,
        "r_squared": result.r_squared,
        "confidence": result.confidence,
        "message": result.message,
        "projected_at": result.projected_at,
        "projected_size_bytes": result.projected_size,
        "filesystem": filesystem,
        "full_at": result.full_at,
        "full_reason": result.full_reason,
    }
