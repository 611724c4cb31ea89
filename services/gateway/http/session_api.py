"""`/api/v1/session`: log in with the API token (a session cookie), see whether one is
needed, log out. The login page uses it; it answers the same with no token configured."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from quart import Blueprint, Response, after_this_request, request
from quart_schema import validate_request, validate_response
from werkzeug.wrappers import Response as WerkzeugResponse

from common.settings import Settings
from services.gateway.http.auth import bearer_token, token_matches
from services.gateway.http.errors import ApiError, rate_limited
from services.gateway.http.openapi_doc import document_errors
from services.gateway.http.rate_limit import ClientRateLimiter
from services.gateway.http.session import COOKIE_NAME, SessionSigner

# Guessing a token through the login form: a few tries a minute per address.
LOGINS_PER_MINUTE = 10
LOGIN_BURST = 5


AnyResponse = Response | WerkzeugResponse


class LoginRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    token: str = Field(min_length=1, max_length=4096)


class SessionOut(BaseModel):
    token_required: bool = Field(description="VV_API_TOKEN is set")
    authenticated: bool = Field(description="this request carries a valid token or session")
    expires_at: datetime | None = Field(None, description="when a new session ends")


def _is_https() -> bool:
    return request.scheme == "https" or request.headers.get("X-Forwarded-Proto") == "https"


RevocationStore = Callable[[str, float], Awaitable[None]]


def session_blueprint(
    settings: Settings, sessions: SessionSigner | None, keep_revoked: RevocationStore
) -> Blueprint:
    """`keep_revoked(nonce, expires_at)` stores a logout so a restart keeps it."""
    blueprint = Blueprint("session", __name__, url_prefix="/api/v1")
    expected = settings.api_token.get_secret_value() if settings.api_token else None
    logins = ClientRateLimiter(LOGINS_PER_MINUTE / 60, LOGIN_BURST)

    def authenticated() -> bool:
        if expected is None or sessions is None:
            return True
        offered = bearer_token(request.headers.get("Authorization"))
        return token_matches(offered, expected) or sessions.valid(request.cookies.get(COOKIE_NAME))

    def state(**extra: Any) -> dict[str, Any]:
        return {"token_required": expected is not None, "authenticated": authenticated(), **extra}

    @blueprint.get("/session")
    @validate_response(SessionOut)
    async def session_state() -> dict[str, Any]:
        return state()

    @blueprint.post("/session")
    @validate_request(LoginRequest)
    @validate_response(SessionOut)
    @document_errors(400, 401, 429)
    async def log_in(data: LoginRequest) -> dict[str, Any]:
        if expected is None or sessions is None:
            return state()
        wait = logins.retry_after(request.remote_addr or "unknown")
        if wait:
            raise rate_limited("too many login attempts", wait)
        if not token_matches(data.token, expected):
            raise ApiError(401, "UNAUTHORIZED", "that is not the API token")
        value, expires = sessions.issue()
        expires_at = datetime.fromtimestamp(expires, UTC)
        secure = _is_https()

        @after_this_request
        async def _set_cookie(response: AnyResponse) -> AnyResponse:
            response.set_cookie(
                COOKIE_NAME,
                value,
                max_age=int(sessions.ttl_seconds),
                path="/",
                httponly=True,
                samesite="Strict",
                secure=secure,
            )
            return response

        return {"token_required": True, "authenticated": True, "expires_at": expires_at}

    @blueprint.delete("/session")
    @validate_response(SessionOut)
    async def log_out() -> dict[str, Any]:
        revoked = sessions.revoke(request.cookies.get(COOKIE_NAME)) if sessions else None
        if revoked is not None:
            await keep_revoked(*revoked)

        @after_this_request
        async def _clear_cookie(response: AnyResponse) -> AnyResponse:
            response.delete_cookie(COOKIE_NAME, path="/", httponly=True, samesite="Strict")
            return response

        return {"token_required": expected is not None, "authenticated": False}

    return blueprint
