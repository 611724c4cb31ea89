"""VolumeViz's own page, served by the gateway at `/ui/` (and at `/` when no VV_STATIC_DIR is
set): HTML, CSS and plain JavaScript modules in `static/`, no build step, no framework, and
nothing from elsewhere, so it runs under the page policy of http/security_headers.py."""

from __future__ import annotations

from pathlib import Path

from quart import Blueprint, Response
from quart_schema import hide
from werkzeug.security import safe_join

from services.gateway.http.errors import ApiError
from services.gateway.http.pages import send_page_file

STATIC_DIR = Path(__file__).with_name("static")
UI_PATH = "/ui"


def ui_blueprint(serve_at_root: bool) -> Blueprint:
    blueprint = Blueprint("ui", __name__)

    @blueprint.get(f"{UI_PATH}/")
    @hide
    async def page() -> Response:
        return await send_page_file(STATIC_DIR / "index.html")

    @blueprint.get(f"{UI_PATH}/<path:name>")
    @hide
    async def asset(name: str) -> Response:
        found = safe_join(str(STATIC_DIR), name)
        if found is None or not Path(found).is_file():
            raise ApiError(404, "NOT_FOUND", f"no such route: {UI_PATH}/{name}")
        return await send_page_file(Path(found))

    if serve_at_root:

        @blueprint.get("/")
        @hide
        async def root_page() -> Response:
            return await send_page_file(STATIC_DIR / "index.html")

    return blueprint
