"""Repeated listing requests answered in front of Quart, under the same rules.

A dashboard asks for the same page again and again; between two catalog changes its bytes
are already encoded (readmodel/listing.py). Through Quart, handing them back still cost
more than half of each request (bench/api.py, py-spy: the request and response objects and
every before/after hook). This ASGI layer answers such a request itself, but only when
every cross-cutting rule would let it through unchanged: an allowed Host, no Origin (a
CORS request is quart-cors's), the API token as a bearer when one is set (a session cookie
takes the long way), and a body cached for this exact query string. Anything else, the
first request for a query included, goes to Quart, which refuses, validates and encodes as
always. The headers are those security_headers.py puts on every API answer.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from hypercorn.typing import ASGIReceiveCallable, ASGISendCallable, Scope

from services.gateway.http.auth import bearer_token, token_matches
from services.gateway.http.guards import HostAllowList
from services.gateway.http.security_headers import API_HEADERS, request_id_for
from services.gateway.readmodel.listing import ListingCache

AsgiApp = Callable[[Scope, ASGIReceiveCallable, ASGISendCallable], Awaitable[None]]

LISTING_PATH = "/api/v1/volumes"
# quart-cors varies every answer on Origin; so does this one, for the same caches.
_FIXED_HEADERS = [
    (b"content-type", b"application/json"),
    (b"vary", b"Origin"),
    *((name.lower().encode(), value.encode()) for name, value in API_HEADERS.items()),
]


class CachedListingFront:
    def __init__(
        self,
        app: AsgiApp,
        listings: ListingCache,
        hosts: HostAllowList,
        api_token: str | None,
    ) -> None:
        self._app = app
        self._listings = listings
        self._hosts = hosts
        self._api_token = api_token

    async def __call__(
        self, scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable
    ) -> None:
        body = self._cached(scope)
        if body is None:
            await self._app(scope, receive, send)
            return
        headers: dict[bytes, bytes] = dict(scope["headers"])  # type: ignore[typeddict-item]
        request_id = request_id_for(headers.get(b"x-request-id", b"").decode("latin-1"))
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    *_FIXED_HEADERS,
                    (b"content-length", str(len(body)).encode()),
                    (b"x-request-id", request_id.encode()),
                ],
                "trailers": False,
            }
        )
        await send({"type": "http.response.body", "body": body, "more_body": False})

    def _cached(self, scope: Any) -> bytes | None:
        """The cached body when this request may have it without Quart; else None."""
        if (
            scope["type"] != "http"
            or scope["method"] != "GET"
            or scope["path"] != LISTING_PATH
            or scope.get("raw_path", b"") != LISTING_PATH.encode()
        ):
            return None
        headers: dict[bytes, bytes] = {}
        for name, value in scope["headers"]:
            if name in headers:
                return None  # a repeated header: Quart's reading of it decides
            headers[name] = value
        if b"origin" in headers:
            return None
        host = headers.get(b"host")
        if host is None or not self._hosts.allows(host.decode("latin-1")):
            return None
        if self._api_token is not None:
            offered = bearer_token(headers.get(b"authorization", b"").decode("latin-1") or None)
            if not token_matches(offered, self._api_token):
                return None
        return self._listings.cached_body(scope["query_string"], answered_by="front")
