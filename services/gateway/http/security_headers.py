"""Security headers on every response, and the request id echoed in `X-Request-ID`.

The API serves only JSON, so its policy forbids everything (`default-src 'none'`). The one
HTML page, the OpenAPI docs (quart-schema's Swagger UI), loads Swagger UI's script and style
from cdnjs and runs one inline script; its policy allows exactly that host and the hash of
that inline script (computed from the page itself), and fetching the document from us.
"""

from __future__ import annotations

import base64
import hashlib
import re
import uuid

from quart import Quart, Response, g, has_websocket_context, request, websocket
from quart.typing import ResponseTypes

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", re.DOTALL)

DOCS_ASSET_ORIGIN = "https://cdnjs.cloudflare.com"
API_POLICY = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"

COMMON_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
}


def script_hash(script: str) -> str:
    digest = hashlib.sha256(script.encode()).digest()
    return f"'sha256-{base64.b64encode(digest).decode()}'"


def docs_policy(html: str) -> str:
    hashes = " ".join(script_hash(script) for script in _INLINE_SCRIPT.findall(html))
    return (
        f"default-src 'none'; script-src {DOCS_ASSET_ORIGIN} {hashes}; "
        f"style-src {DOCS_ASSET_ORIGIN}; img-src 'self' data:; connect-src 'self'; "
        "frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
    )


def install_security_headers(app: Quart, docs_path: str) -> None:
    @app.before_request
    @app.before_websocket
    async def _assign_request_id() -> None:
        headers = websocket.headers if has_websocket_context() else request.headers
        incoming = headers.get("X-Request-ID", "")
        g.request_id = incoming if _REQUEST_ID.match(incoming) else uuid.uuid4().hex

    @app.after_websocket
    async def _add_ws_headers(response: ResponseTypes | None) -> ResponseTypes | None:
        # Only a refused upgrade has a response; an accepted WebSocket has none.
        return await _add_headers(response) if isinstance(response, Response) else response

    @app.after_request
    async def _add_headers(response: Response) -> Response:
        response.headers["X-Request-ID"] = getattr(g, "request_id", "")
        response.headers.update(COMMON_HEADERS)
        path = websocket.path if has_websocket_context() else request.path
        if path == docs_path and response.mimetype == "text/html":
            policy = docs_policy(await response.get_data(as_text=True))
        else:
            policy = API_POLICY
            response.headers.setdefault("Cache-Control", "no-store")
        response.headers["Content-Security-Policy"] = policy
        return response
