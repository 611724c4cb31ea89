"""Tree routes: inside a volume, what takes the space and what grew (services/gateway/
trees/ holds the logic; this maps its errors to statuses)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from quart import Blueprint
from quart_schema import validate_querystring, validate_response

from services.gateway.api.tree_models import (
    LargestFilesOut,
    LargestFilesQuery,
    TreeChangesOut,
    TreeChangesQuery,
    TreeOut,
    TreeQuery,
)
from services.gateway.api.volumes import find_volume, resolve_path_volume
from services.gateway.http.errors import ApiError
from services.gateway.http.openapi_doc import document_errors
from services.gateway.runtime import runtime
from services.gateway.storage.trees import StoredTree
from services.gateway.trees.errors import InvalidTreePath, NoTreeYet, TreePathNotFound
from services.gateway.trees.index import TreeIndex, changes

blueprint = Blueprint("trees", __name__, url_prefix="/api/v1")
blueprint.url_value_preprocessor(resolve_path_volume)  # a volume named with ?host=


@asynccontextmanager
async def _tree_errors() -> AsyncIterator[None]:
    try:
        yield
    except InvalidTreePath as error:
        raise ApiError(
            400,
            "INVALID_REQUEST",
            f"invalid path: {error.message}",
            details={"errors": [{"loc": ["query", "path"], "msg": error.message}]},
        ) from None
    except TreePathNotFound as error:
        raise ApiError(404, "PATH_NOT_FOUND", error.message) from None
    except NoTreeYet as error:
        raise ApiError(409, "NO_TREE_YET", error.message) from None


async def _kept(volume_id: str) -> list[tuple[StoredTree, TreeIndex]]:
    find_volume(volume_id)
    async with _tree_errors():
        return await runtime().trees.kept(volume_id)


def _scan(stored: StoredTree) -> dict[str, Any]:
    return {"scan_id": stored.scan_id, "scanned_at": stored.scanned_at}


@blueprint.get("/volumes/<volume_id>/tree")
@validate_querystring(TreeQuery)
@validate_response(TreeOut, 200)
@document_errors(400, 404, 409)
async def volume_tree(volume_id: str, query_args: TreeQuery) -> dict[str, Any]:
    """A directory of the latest native scan's tree with `depth` levels of children."""
    (stored, index), *_ = await _kept(volume_id)
    async with _tree_errors():
        found = index.find(query_args.path)
    node = index.describe(found, query_args.depth, query_args.limit, query_args.sort)
    return {
        "volume_id": volume_id,
        **_scan(stored),
        "min_share": stored.tree.min_share,
        "node": node,
    }


@blueprint.get("/volumes/<volume_id>/largest-files")
@validate_querystring(LargestFilesQuery)
@validate_response(LargestFilesOut, 200)
@document_errors(400, 404, 409)
async def largest_files(volume_id: str, query_args: LargestFilesQuery) -> dict[str, Any]:
    (stored, _), *_ = await _kept(volume_id)
    files = stored.tree.largest_files
    return {
        "volume_id": volume_id,
        **_scan(stored),
        "data": [file.model_dump() for file in files[: query_args.limit]],
        "total": len(files),
    }


@blueprint.get("/volumes/<volume_id>/tree/changes")
@validate_querystring(TreeChangesQuery)
@validate_response(TreeChangesOut, 200)
@document_errors(400, 404, 409)
async def tree_changes(volume_id: str, query_args: TreeChangesQuery) -> dict[str, Any]:
    """The directories whose disk usage changed most between the previous native scan and
    the latest one."""
    kept = await _kept(volume_id)
    latest, index = kept[0]
    if len(kept) < 2:
        return {"volume_id": volume_id, "before": None, "after": _scan(latest), "data": []}
    previous, previous_index = kept[1]
    return {
        "volume_id": volume_id,
        "before": _scan(previous),
        "after": _scan(latest),
        "data": changes(previous_index, index, query_args.limit),
    }
