"""API token: with `VV_API_TOKEN` set, every route but the liveness probe needs it.

REST sends `Authorization: Bearer <token>`. Browsers cannot set headers on a WebSocket, so
the upgrade may instead carry a `token` query parameter, or offer the subprotocol
`bearer.<token>` in `Sec-WebSocket-Protocol` (the server then selects another protocol the
client offered, or else that one, because a browser drops a connection whose offered
protocols were all ignored). Tokens are compared in constant time; a missing or wrong one
gets 401 with the contract's error body. CORS preflights (OPTIONS) carry no credentials by
design and pass, so the browser can go on to send the real request with its token.
"""

from __future__ import annotations

import hmac
import logging

from quart import Quart, Response, request, websocket

from common.settings import Settings
from services.gateway.http.errors import error_response

log = logging.getLogger("gateway.auth")

PUBLIC_PATHS = frozenset({"/api/v1/health/live"})
WS_PROTOCOL_PREFIX = "bearer."
CHALLENGE = 'Bearer realm="volumeviz"'


def token_matches(offered: str | None, expected: str) -> bool:
    if offered is None:
        return False
    return hmac.compare_digest(offered.encode(), expected.encode())


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


def install_auth(app: Quart, settings: Settings) -> None:
    if settings.api_token is None:
        return
    expected = settings.api_token.get_secret_value()

    @app.before_request
    async def _require_token() -> Response | None:
        if request.method == "OPTIONS" or request.path in PUBLIC_PATHS:
            return None
        if token_matches(bearer_token(request.headers.get("Authorization")), expected):
            return None
        log.warning(
            "refused request without a valid token path=%r peer=%s",
            request.path[:200],
            request.remote_addr,
        )
        return unauthorized()

    @app.before_websocket
    async def _require_ws_token() -> Response | None:
        protocols = offered_protocols(websocket.headers.get("Sec-WebSocket-Protocol"))
        if token_matches(websocket_token(websocket.args.get("token"), protocols), expected):
            return None
        log.warning("refused websocket without a valid token peer=%s", websocket.remote_addr)
        return unauthorized()
