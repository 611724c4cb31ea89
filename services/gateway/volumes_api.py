"""Volume routes: listing, one volume, its attachments, the orphaned report."""

from __future__ import annotations

from typing import Any

from quart import Blueprint
from quart_schema import validate_querystring, validate_response

from services.gateway.api_models import (
    AttachmentListOut,
    ErrorBody,
    VolumeDetailOut,
    VolumeListOut,
    VolumeListQuery,
)
from services.gateway.catalog import VolumeView
from services.gateway.errors import volume_not_found
from services.gateway.runtime import runtime

blueprint = Blueprint("volumes", __name__, url_prefix="/api/v1")

VOLUME_ID_MAX_LENGTH = 255


def find_volume(volume_id: str) -> VolumeView:
    view = runtime().catalog.get(volume_id) if len(volume_id) <= VOLUME_ID_MAX_LENGTH else None
    if view is None:
        raise volume_not_found(volume_id[:VOLUME_ID_MAX_LENGTH])
    return view


@blueprint.get("/volumes")
@validate_querystring(VolumeListQuery)
@validate_response(VolumeListOut, 200)
@validate_response(ErrorBody, 400)
async def list_volumes(query_args: VolumeListQuery) -> dict[str, Any]:
    page, envelope = runtime().listings.page(query_args)
    return {"data": [view.json for view in page], **envelope}


@blueprint.get("/volumes/<volume_id>/attachments")
@validate_response(AttachmentListOut, 200)
@validate_response(ErrorBody, 404)
async def volume_attachments(volume_id: str) -> dict[str, Any]:
    view = find_volume(volume_id)
    data = [attachment.model_dump() for attachment in view.record.attachments]
    return {"data": data, "total": len(data)}


@blueprint.get("/volumes/<volume_id>")
@validate_response(VolumeDetailOut, 200)
@validate_response(ErrorBody, 404)
async def get_volume(volume_id: str) -> dict[str, Any]:
    return find_volume(volume_id).detail_json()
