"""The gateway's own pages: the login page and the OpenAPI docs page.

Both are files in `pages/` (HTML, CSS and script modules; no inline script, so they run
under the page policy of `security_headers`). The docs page runs Swagger UI from the
`swagger-ui-py` package's copy of its assets, so it works on a host without internet.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from quart import Blueprint, Response, send_file
from quart_schema import hide

from services.gateway.http.errors import ApiError
from services.gateway.http.openapi_doc import API_DOCS_PATH
from services.gateway.http.security_headers import serve_as_page

PAGES_DIR = Path(__file__).with_name("pages")
DOCS_ASSETS = frozenset({"swagger-ui.css", "swagger-ui-bundle.js"})


def swagger_ui_dir() -> Path:
    """The swagger-ui-py package's static files, found without importing the package."""
    spec = importlib.util.find_spec("swagger_ui")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("swagger-ui-py is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "static"


async def send_page_file(path: Path) -> Response:
    """A file of a page, under the page policy, always revalidated (a new version shows at
    once)."""
    serve_as_page()
    response = await send_file(path, conditional=True)
    response.headers["Cache-Control"] = "no-cache"
    return response


def pages_blueprint() -> Blueprint:
    blueprint = Blueprint("pages", __name__)
    assets = swagger_ui_dir()

    @blueprint.get("/login")
    @hide
    async def login_page() -> Response:
        return await send_page_file(PAGES_DIR / "login.html")

    @blueprint.get("/login.js")
    @hide
    async def login_script() -> Response:
        return await send_page_file(PAGES_DIR / "login.js")

    @blueprint.get("/login.css")
    @hide
    async def login_style() -> Response:
        return await send_page_file(PAGES_DIR / "login.css")

    @blueprint.get(API_DOCS_PATH)
    @hide
    async def docs_page() -> Response:
        return await send_page_file(PAGES_DIR / "docs.html")

    @blueprint.get(f"{API_DOCS_PATH}/docs.js")
    @hide
    async def docs_script() -> Response:
        return await send_page_file(PAGES_DIR / "docs.js")

    @blueprint.get(f"{API_DOCS_PATH}/<string:name>")
    @hide
    async def docs_asset(name: str) -> Response:
        if name not in DOCS_ASSETS:
            raise ApiError(404, "NOT_FOUND", f"no such route: {API_DOCS_PATH}/{name}")
        return await send_page_file(assets / name)

    return blueprint
