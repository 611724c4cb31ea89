"""Security headers on every response, and the request id echoed in `X-Request-ID`.

Two content policies. The API serves only JSON, so its policy forbids everything
(`default-src 'none'`). Pages (the dashboard from `VV_STATIC_DIR`, the login page, the docs
page) get a policy that lets a page of this origin run: scripts, styles, images and fonts
from `'self'`, fetches to `'self'` and WebSockets to the same host, and still no plugins,
no framing, no foreign `<base>` and no inline script. A handler that serves a page says so
with `serve_as_page()`.
"""

from __future__ import annotations

import re
import uuid

from quart import Quart, Response, g, has_websocket_context, request, websocket
from quart.typing import ResponseTypes

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_HOST = re.compile(r"^[A-Za-z0-9.:\[\]-]{1,255}$")

API_POLICY = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"

COMMON_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
}


# What every API answer carries besides its request id (and a page its own policy).
API_HEADERS = {
    **COMMON_HEADERS,
    "Content-Security-Policy": API_POLICY,
    "Cache-Control": "no-store",
}


def request_id_for(incoming: str) -> str:
    """The client's X-Request-ID when it is a plain token, else a fresh one."""
    return incoming if _REQUEST_ID.match(incoming) else uuid.uuid4().hex


def page_policy(host: str) -> str:
    """`host` has passed the Host check (`guards`); it is checked again here because with
    `VV_ALLOWED_HOSTS=*` any text passes, and it must not add directives."""
    sockets = f" ws://{host} wss://{host}" if _HOST.match(host) else ""
    return (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        f"font-src 'self' data:; connect-src 'self'{sockets}; "
        "manifest-src 'self'; frame-ancestors 'none'; base-uri 'self'; object-src 'none'; "
        "form-action 'self'"
    )


def serve_as_page() -> None:
    """The response of this request is a page (or one of its files), not an API answer."""
    g.serves_page = True


def install_security_headers(app: Quart) -> None:
    @app.before_request
    @app.before_websocket
    async def _assign_request_id() -> None:
        headers = websocket.headers if has_websocket_context() else request.headers
        g.request_id = request_id_for(headers.get("X-Request-ID", ""))

    @app.after_websocket
    async def _add_ws_headers(response: ResponseTypes | None) -> ResponseTypes | None:
        # Only a refused upgrade has a response; an accepted WebSocket has none.
        return await _add_headers(response) if isinstance(response, Response) else response

    @app.after_request
    async def _add_headers(response: Response) -> Response:
        response.headers["X-Request-ID"] = getattr(g, "request_id", "")
        response.headers.update(COMMON_HEADERS)
        if getattr(g, "serves_page", False):
            host = (websocket if has_websocket_context() else request).headers.get("Host", "")
            response.headers["Content-Security-Policy"] = page_policy(host)
        else:
            response.headers["Content-Security-Policy"] = API_HEADERS["Content-Security-Policy"]
            response.headers.setdefault("Cache-Control", API_HEADERS["Cache-Control"])
        return response
