"""Serving a built dashboard (`VV_STATIC_DIR`) at `/`, on the same port as the API.

Files are served only where no route matched: the handler for "no such route" looks for
the path in the directory and, for any GET or HEAD of a non-API path that is not a file,
answers with `index.html` (client-side routes such as `/volumes/x`). Paths under `/api/`
keep the contract's JSON 404, and no API route can ever be shadowed by a file.
"""

from __future__ import annotations

import logging
from pathlib import Path

from quart import Quart, Response, has_websocket_context, request, send_file
from werkzeug.exceptions import NotFound
from werkzeug.security import safe_join

from services.gateway.http.errors import http_error_response
from services.gateway.http.security_headers import serve_as_page

log = logging.getLogger("gateway.static")

API_PREFIX = "/api"


def _is_api(path: str) -> bool:
    return path == API_PREFIX or path.startswith(API_PREFIX + "/")


def file_for(root: Path, path: str) -> tuple[Path, bool] | None:
    """(file to serve, whether it is the index fallback), or None when there is none."""
    relative = path.lstrip("/")
    candidate = safe_join(str(root), relative) if relative else None
    if candidate is not None and Path(candidate).is_file():
        return Path(candidate), False
    index = root / "index.html"
    return (index, True) if index.is_file() else None


def install_static_files(app: Quart, directory: Path) -> None:
    root = directory.resolve()
    if not (root / "index.html").is_file():
        log.warning("no index.html in the static directory dir=%s", root)
    log.info("serving the dashboard dir=%s", root)

    @app.errorhandler(NotFound)
    async def _static_or_not_found(error: NotFound) -> Response:
        if has_websocket_context() or request.method not in ("GET", "HEAD"):
            return http_error_response(error)
        found = None if _is_api(request.path) else file_for(root, request.path)
        if found is None:
            return http_error_response(error)
        target, is_index = found
        serve_as_page()
        response = await send_file(target, conditional=True)
        if is_index:
            response.headers["Cache-Control"] = "no-cache"  # a new build shows at once
        return response
