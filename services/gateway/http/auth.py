"""API token: with `VV_API_TOKEN` set, every route but the liveness probe and the login page
needs it.

Scripts send `Authorization: Bearer <token>`. Browsers cannot set that header on a page load
or a WebSocket, so they log in once at `/login` and then carry the session cookie
(`services.gateway.http.session`), which static files, REST and the WebSocket accept. A
WebSocket upgrade may also carry a `token` query parameter, or offer the subprotocol
`bearer.<token>` in `Sec-WebSocket-Protocol` (the server then selects another protocol the
client offered, or else that one, because a browser drops a connection whose offered
protocols were all ignored). Tokens are compared in constant time. A page load without
credentials is sent to the login page; anything else gets 401 with the contract's error
body. `OPTIONS` passes only as a CORS preflight from an allowed origin, so a client without a
token cannot learn which routes exist from the `Allow` header.
"""

from __future__ import annotations

import hmac
import logging
from urllib.parse import quote

from quart import Quart, Response, request, websocket

from common.settings import Settings
from services.gateway.http.errors import error_response
from services.gateway.http.refusals import RefusalLog
from services.gateway.http.session import COOKIE_NAME, SessionSigner

log = logging.getLogger("gateway.auth")

LOGIN_PATH = "/login"
PUBLIC_PATHS = frozenset(
    {"/api/v1/health/live", "/api/v1/session", LOGIN_PATH, "/login.js", "/login.css"}
)
WS_PROTOCOL_PREFIX = "bearer."
CHALLENGE = 'Bearer realm="volumeviz"'


def token_matches(offered: str | None, expected: str) -> bool:
    if offered is None:
        return False
    # bytes: compare_digest refuses non-ASCII text, and a client may send any
    return hmac.compare_digest(offered.encode("utf-8", "surrogateescape"), expected.encode())


def bearer_token(authorization: str | None) -> str | None:
    scheme, _, value = (authorization or "").partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


def offered_protocols(header: str | None) -> list[str]:
    return [part.strip() for part in (header or "").split(",") if part.strip()]


def websocket_token(query_token: str | None, protocols: list[str]) -> str | None:
    """The token of an upgrade request: the `token` parameter, else a `bearer.` protocol."""
    if query_token:
        return query_token
    for protocol in protocols:
        if protocol.startswith(WS_PROTOCOL_PREFIX):
            return protocol.removeprefix(WS_PROTOCOL_PREFIX)
    return None


def selected_protocol(protocols: list[str]) -> str | None:
    """The subprotocol to answer with: a real one if offered, else the token's own."""
    plain = [p for p in protocols if not p.startswith(WS_PROTOCOL_PREFIX)]
    candidates = plain or protocols
    return candidates[0] if candidates else None


def unauthorized() -> Response:
    response = error_response(401, "UNAUTHORIZED", "a valid API token is required")
    response.headers["WWW-Authenticate"] = CHALLENGE
    return response


def _is_page_load() -> bool:
    """A browser navigating to a page (not a script's fetch): it can be sent to log in."""
    return request.method in ("GET", "HEAD") and (
        request.headers.get("Sec-Fetch-Mode") == "navigate"
        or (request.accept_mimetypes.accept_html and not request.accept_mimetypes.accept_json)
    )


def _is_allowed_preflight(allowed_origins: list[str]) -> bool:
    return (
        request.method == "OPTIONS"
        and "Access-Control-Request-Method" in request.headers
        and request.headers.get("Origin", "").rstrip("/") in allowed_origins
    )


def install_auth(app: Quart, settings: Settings, sessions: SessionSigner | None) -> None:
    if settings.api_token is None or sessions is None:
        return
    expected = settings.api_token.get_secret_value()
    refusals = RefusalLog(log)

    @app.before_request
    async def _require_token() -> Response | None:
        if request.path in PUBLIC_PATHS or _is_allowed_preflight(settings.allowed_origins):
            return None
        if token_matches(bearer_token(request.headers.get("Authorization")), expected):
            return None
        if sessions.valid(request.cookies.get(COOKIE_NAME)):
            return None
        refusals.warning(
            "token",
            "refused request without a valid token method=%s path=%r peer=%s",
            request.method,
            request.path[:200],
            request.remote_addr,
        )
        if _is_page_load():
            target = request.full_path if request.query_string else request.path
            location = f"{LOGIN_PATH}?next={quote(target, safe='/')}"
            return Response("", status=303, headers={"Location": location})
        return unauthorized()

    @app.before_websocket
    async def _require_ws_token() -> Response | None:
        protocols = offered_protocols(websocket.headers.get("Sec-WebSocket-Protocol"))
        if token_matches(websocket_token(websocket.args.get("token"), protocols), expected):
            return None
        if sessions.valid(websocket.cookies.get(COOKIE_NAME)):
            return None
        refusals.warning(
            "ws-token", "refused websocket without a valid token peer=%s", websocket.remote_addr
        )
        return unauthorized()
