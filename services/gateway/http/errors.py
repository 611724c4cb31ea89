"""The contract's error body, everywhere: `{code, message, error, request_id, details?}`.

Never an HTML page, never a stack trace: every exception that leaves a route becomes one.
"""

from __future__ import annotations

import logging
from typing import Any

from quart import Quart, Response, g, has_websocket_context, jsonify, request, websocket
from quart_schema import RequestSchemaValidationError
from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound
from werkzeug.routing import WebsocketMismatch

from services.gateway.scans.errors import ScanRequestError, TooSoon, UnknownVolume
from services.gateway.storage.store import StorageBusy, StoreNotWritable

log = logging.getLogger("gateway.errors")

_HTTP_CODES = {
    400: "BAD_REQUEST",
    401: "UNAUTHORIZED",
    403: "FORBIDDEN",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    406: "NOT_ACCEPTABLE",
    408: "REQUEST_TIMEOUT",
    409: "CONFLICT",
    413: "PAYLOAD_TOO_LARGE",
    415: "UNSUPPORTED_MEDIA_TYPE",
    429: "TOO_MANY_REQUESTS",
    503: "SERVICE_UNAVAILABLE",
}


class ApiError(Exception):
    """Raised by routes for any answer that is not a success."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        details: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details
        self.headers = headers or {}


def volume_not_found(volume_id: str) -> ApiError:
    return ApiError(404, "VOLUME_NOT_FOUND", f"volume {volume_id!r} not found")


def rate_limited(reason: str, retry_after_seconds: int) -> ApiError:
    """429 saying when to come back, in the body and in Retry-After."""
    return ApiError(
        429,
        "RATE_LIMITED",
        f"{reason}; retry in {retry_after_seconds} s",
        details={"retry_after_seconds": retry_after_seconds},
        headers={"Retry-After": str(retry_after_seconds)},
    )


def error_response(
    status: int, code: str, message: str, details: dict[str, Any] | None = None
) -> Response:
    body: dict[str, Any] = {
        "code": code,
        "message": message,
        "error": message,  # the dashboard's client shows `error`
        "request_id": getattr(g, "request_id", None) or "",
    }
    if details:
        body["details"] = details
    response = jsonify(body)
    response.status_code = status
    return response


def _validation_details(error: RequestSchemaValidationError) -> dict[str, Any]:
    cause = error.validation_error
    errors = getattr(cause, "errors", None)
    if callable(errors):
        return {
            "errors": [
                {
                    "loc": [str(part) for part in item.get("loc", ())],
                    "msg": str(item.get("msg", "")).removeprefix("Value error, "),
                }
                for item in errors(include_url=False, include_context=False, include_input=False)
            ]
        }
    return {"errors": [{"loc": [], "msg": str(cause)}]}


WEBSOCKET_PATHS = ("/api/v1/ws", "/ws")


def http_error_response(error: HTTPException) -> Response:
    """Werkzeug's HTTP errors (unknown route, wrong method, ...) in the contract's body."""
    if has_websocket_context() and isinstance(
        error, NotFound | MethodNotAllowed | WebsocketMismatch
    ):
        # An upgrade where no WebSocket is: whatever HTTP route may be there, it is not found.
        return error_response(
            404,
            "NOT_FOUND",
            f"no WebSocket at {websocket.path}; they are at {' and '.join(WEBSOCKET_PATHS)}",
        )
    status = error.code or 500
    code = _HTTP_CODES.get(status, "HTTP_ERROR")
    path = websocket.path if has_websocket_context() else request.path
    method = "GET" if has_websocket_context() else request.method
    message = {
        404: f"no such route: {path}",
        405: f"method {method} is not allowed for {path}",
    }.get(status, error.description or code.lower())
    response = error_response(status, code, message)
    allowed = getattr(error, "valid_methods", None)
    if status == 405 and allowed:
        response.headers["Allow"] = ", ".join(sorted(allowed))
    return response


def install_error_handlers(app: Quart) -> None:
    @app.errorhandler(ApiError)
    async def _api_error(error: ApiError) -> Response:
        response = error_response(error.status, error.code, error.message, error.details)
        response.headers.update(error.headers)
        return response

    @app.errorhandler(RequestSchemaValidationError)
    async def _invalid_request(error: RequestSchemaValidationError) -> Response:
        details = _validation_details(error)
        first = details["errors"][0] if details["errors"] else {"loc": [], "msg": "invalid"}
        where = ".".join(first["loc"]) or "request"
        return error_response(400, "INVALID_REQUEST", f"invalid {where}: {first['msg']}", details)

    @app.errorhandler(ScanRequestError)
    async def _scan_refused(error: ScanRequestError) -> Response:
        if isinstance(error, UnknownVolume):
            return error_response(404, "VOLUME_NOT_FOUND", error.message)
        if isinstance(error, TooSoon):
            refusal = rate_limited(error.message, error.retry_after_seconds)
            return await _api_error(refusal)
        return error_response(503, "SCANNER_UNAVAILABLE", error.message)

    @app.errorhandler(StoreNotWritable)
    async def _not_stored(error: StoreNotWritable) -> Response:
        if isinstance(error, StorageBusy):  # another process holds the lock: soon again
            response = error_response(503, "STORAGE_BUSY", str(error))
            response.headers["Retry-After"] = "1"
            return response
        # 507: the request was fine, and will be once the disk has room again.
        return error_response(507, "STORAGE_FULL", str(error))

    @app.errorhandler(HTTPException)
    async def _http_error(error: HTTPException) -> Response:
        return http_error_response(error)

    @app.errorhandler(Exception)
    async def _unexpected(error: Exception) -> Response:
        log.exception("unhandled error request_id=%s", getattr(g, "request_id", ""))
        return error_response(500, "INTERNAL_ERROR", "internal error")
