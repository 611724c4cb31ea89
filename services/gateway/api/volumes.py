"""Volume routes: listing, one volume, its attachments.

A volume id in a path is checked before it is looked up: an id that could never be a
volume name (empty, `.`/`..`, a path separator, a control or format character such as NUL,
a newline or a bidi override, or over 255 bytes) is a 400, so nothing hostile reaches a
lookup, a log line or a scan. Everything else is looked up exactly; unknown ids are a 404.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Awaitable, Callable
from functools import wraps
from typing import Any

from quart import Blueprint, Response, request
from quart_schema import document_response, validate_querystring, validate_response

from common.messages import split_volume_id
from common.settings import HOST_ID
from services.gateway.api.models import AttachmentListOut, VolumeDetailOut, VolumeListOut
from services.gateway.http.errors import ApiError, volume_not_found
from services.gateway.http.openapi_doc import document_errors
from services.gateway.readmodel.query import VolumeListQuery
from services.gateway.readmodel.views import VolumeView
from services.gateway.runtime import runtime

blueprint = Blueprint("volumes", __name__, url_prefix="/api/v1")

VOLUME_ID_MAX_BYTES = 255


def volume_id_problem(volume_id: str, multi_host: bool = False) -> str | None:
    """Why `volume_id` cannot name a volume, or None when it may (`<host>/<name>` names one
    on a gateway of many hosts)."""
    host, name = split_volume_id(volume_id)
    if multi_host and host is not None and HOST_ID.fullmatch(host):
        volume_id = name
    if len(volume_id.encode(errors="surrogatepass")) > VOLUME_ID_MAX_BYTES:
        return f"longer than {VOLUME_ID_MAX_BYTES} bytes"
    if volume_id in ("", ".", ".."):
        return "empty, '.' or '..'"
    if "/" in volume_id or "\\" in volume_id:
        return "contains a path separator"
    if any(unicodedata.category(char).startswith("C") for char in volume_id):
        return "contains a control or format character"
    return None


def resolve_path_volume(endpoint: str | None, values: dict[str, Any] | None) -> None:
    """Before a route runs: a volume named in its path becomes the volume's id. With
    `?host=`, the id on that host (`<host>/<name>`); without, on a gateway of many hosts,
    the one volume of that name if only one host has it (else a 400 naming the hosts)."""
    if not values or not isinstance(values.get("volume_id"), str):
        return
    state = runtime()
    if not state.settings.multi_host:
        return  # one host: ids are names, as they always were
    name: str = values["volume_id"]
    host = request.args.get("host")
    catalog = state.catalog
    if host is not None:
        if not HOST_ID.fullmatch(host):
            raise _invalid("query", "host", "not a host name")
        values["volume_id"] = f"{host}/{name}"
        return
    if catalog.get(name) is not None:
        return
    ids = sorted(catalog.ids_named(name))
    if len(ids) == 1:
        values["volume_id"] = ids[0]
    elif len(ids) > 1:
        hosts = ", ".join(str(split_volume_id(volume_id)[0]) for volume_id in ids)
        raise _invalid("query", "host", f"volume {name!r} is on several hosts ({hosts}): give host")


# Per blueprint with volume routes, not on the app: Quart runs an app's URL value
# preprocessors for WebSockets too, reading `request` there (outside a request context).
blueprint.url_value_preprocessor(resolve_path_volume)


def _invalid(where: str, field: str, problem: str) -> ApiError:
    return ApiError(
        400,
        "INVALID_REQUEST",
        f"invalid {field}: {problem}",
        details={"errors": [{"loc": [where, field], "msg": problem}]},
    )


def find_volume(volume_id: str) -> VolumeView:
    problem = volume_id_problem(volume_id, runtime().settings.multi_host)
    if problem is not None:
        raise _invalid("path", "volume_id", problem)
    view = runtime().catalog.get(volume_id)
    if view is None:
        raise volume_not_found(volume_id)
    return view


def _json(body: bytes) -> Response:
    return Response(body, content_type="application/json")


def _cached_listing(
    route: Callable[..., Awaitable[Response]],
) -> Callable[..., Awaitable[Response]]:
    """Outside the query's validation: a query string answered before in this catalog
    version gets the same bytes again, with nothing validated, filtered or encoded."""

    @wraps(route)
    async def serve(*args: Any, **kwargs: Any) -> Response:
        body = runtime().listings.cached_body(request.query_string)
        if body is not None:
            return _json(body)
        return await route(*args, **kwargs)

    return serve


@blueprint.get("/volumes")
@_cached_listing
@validate_querystring(VolumeListQuery)
@document_response(VolumeListOut, 200)
@document_errors(400)
async def list_volumes(query_args: VolumeListQuery) -> Response:
    # The body is not validated per request: it is built from the same views every other
    # route validates (and the OpenAPI fuzz test checks it against VolumeListOut).
    return _json(runtime().listings.encoded_page(query_args, request.query_string))


@blueprint.get("/volumes/<volume_id>/attachments")
@validate_response(AttachmentListOut, 200)
@document_errors(400, 404)
async def volume_attachments(volume_id: str) -> dict[str, Any]:
    view = find_volume(volume_id)
    data = [attachment.model_dump() for attachment in view.record.attachments]
    return {"data": data, "total": len(data)}


@blueprint.get("/volumes/<volume_id>")
@validate_response(VolumeDetailOut, 200)
@document_errors(400, 404)
async def get_volume(volume_id: str) -> dict[str, Any]:
    return find_volume(volume_id).detail_json()
