"""Checks that keep other web pages out, in one place, before any route runs.

The gateway usually listens on a host that also runs a browser, so a page from anywhere can
aim requests at it:

* **DNS rebinding**: a name the attacker controls resolves to 127.0.0.1, and the page's
  requests then carry `Host: attacker.example`. Every request and WebSocket upgrade whose
  `Host` is not one of the gateway's names (`VV_ALLOWED_HOSTS`, by default localhost,
  127.0.0.1, [::1] and the bind address, each with the gateway's port) is refused with 421.
* **Cross-site requests**: a plain HTML form on any site can POST here. A request that changes
  anything (POST, PUT, PATCH, DELETE) must come from the gateway's own origin or an allowed
  one (`Origin`; without it, `Sec-Fetch-Site: cross-site` is refused), else 403; and if it
  has a body, that body must be JSON (a form cannot send `application/json` cross-site
  without a preflight), else 415. Scripts send no `Origin` and pass.
* **Paths that move**: an encoded slash (`%2F`) is a 400 and `//` no route (a 404), never
  a redirect to another route.
"""

from __future__ import annotations

import logging
from urllib.parse import urlsplit

from quart import Quart, Response, has_websocket_context, request, websocket
from werkzeug.exceptions import HTTPException

from common.settings import Settings
from services.gateway.http.errors import error_response, http_error_response
from services.gateway.http.refusals import RefusalLog

log = logging.getLogger("gateway.guards")

UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
ANY_HOST = "*"


def _split_host(value: str) -> tuple[str, str | None]:
    """('name', 'port' or None) of a Host header or an allowed-host entry, name lower-cased."""
    value = value.strip().lower()
    if value.startswith("["):  # [::1]:8080
        name, _, rest = value.partition("]")
        port = rest.removeprefix(":") if rest.startswith(":") else None
        return name + "]", port or None
    name, sep, port = value.rpartition(":")
    if not sep or ":" in name:  # no port, or a bare IPv6 address
        return value, None
    return name, port or None


class HostAllowList:
    """`Host` values the gateway answers to: an entry with a port allows only that port."""

    def __init__(self, entries: list[str]) -> None:
        self.any = ANY_HOST in entries
        self.entries = [_split_host(entry) for entry in entries if entry != ANY_HOST]

    def allows(self, host: str | None) -> bool:
        if self.any:
            return True
        if not host:
            return False
        name, port = _split_host(host)
        return any(
            name == allowed and (allowed_port is None or port == allowed_port)
            for allowed, allowed_port in self.entries
        )


def same_origin(origin: str, host: str | None) -> bool:
    """Whether `origin` is the gateway's own: http(s) on the very host the request names."""
    parts = urlsplit(origin)
    return bool(host) and parts.scheme in ("http", "https") and parts.netloc == host


def origin_allowed(origin: str | None, host: str | None, allowed: list[str]) -> bool:
    """No Origin (a script) is fine; a browser must come from us or an allowed origin."""
    if origin is None:
        return True
    origin = origin.rstrip("/")
    return origin in allowed or same_origin(origin, host)


def _has_body() -> bool:
    length = request.headers.get("Content-Length")
    if length is not None:
        return length.strip() not in ("", "0")
    return "Transfer-Encoding" in request.headers


def has_encoded_slash(raw_path: bytes | None) -> bool:
    """A `%2F` in the path as sent: decoded, it would move the route's boundaries (no volume
    name holds a '/'), so such a request names nothing."""
    return raw_path is not None and b"%2f" in raw_path.lower()


def install_guards(app: Quart, settings: Settings) -> None:
    # `//` and `/%2F/` are no route: werkzeug would merge the slashes and answer an HTML
    # redirect to another route instead.
    app.url_map.merge_slashes = False
    hosts = HostAllowList(settings.gateway_hosts)
    refusals = RefusalLog(log)
    log.info("answering hosts=%s", ",".join(settings.gateway_hosts))

    def refused_host(host: str | None) -> Response | None:
        if hosts.allows(host):
            return None
        refusals.warning("host", "refused request for host=%r", (host or "")[:200])
        return error_response(
            421,
            "HOST_NOT_ALLOWED",
            f"this server does not answer to host {(host or '')[:200]!r}; add it to "
            "VV_ALLOWED_HOSTS if it is one of its names",
        )

    def encoded_slash(raw_path: bytes | None) -> Response | None:
        if not has_encoded_slash(raw_path):
            return None
        return error_response(
            400, "INVALID_REQUEST", "the path holds an encoded '/' (%2F): no volume id has one"
        )

    @app.before_request
    async def _check_request() -> Response | None:
        host = request.headers.get("Host")
        refusal = refused_host(host) or encoded_slash(request.scope.get("raw_path"))
        if refusal is not None or request.method not in UNSAFE_METHODS:
            return refusal
        origin = request.headers.get("Origin")
        cross_site = (
            not origin_allowed(origin, host, settings.allowed_origins)
            if origin is not None
            else request.headers.get("Sec-Fetch-Site") == "cross-site"
        )
        if cross_site:
            refusals.warning(
                "cross-site",
                "refused cross-site request method=%s path=%r origin=%r",
                request.method,
                request.path[:200],
                (origin or "")[:200],
            )
            return error_response(
                403,
                "ORIGIN_NOT_ALLOWED",
                "requests that change anything must come from "
                "this server's own origin or one in VV_ALLOWED_ORIGINS",
            )
        if _has_body() and request.mimetype != "application/json":
            return error_response(
                415, "UNSUPPORTED_MEDIA_TYPE", "request bodies must be application/json"
            )
        return None

    @app.before_websocket
    async def _check_upgrade() -> Response | None:
        assert has_websocket_context()
        host = websocket.headers.get("Host")
        return refused_host(host) or encoded_slash(websocket.scope.get("raw_path"))


def install_websocket_not_found(app: Quart) -> None:
    """An upgrade on a path with no WebSocket is a 404. Registered after auth (so it reveals
    nothing to a client without a token) and before quart-cors, whose check would answer a
    bare 400 for it: it finds no view and so no CORS exemption."""

    @app.before_websocket
    async def _no_such_websocket() -> Response | None:
        error = websocket.routing_exception
        return http_error_response(error) if isinstance(error, HTTPException) else None
