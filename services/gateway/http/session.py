"""Browser sessions for when `VV_API_TOKEN` is set: a browser cannot send a bearer header on a
page load, so the login page trades the token once for a session cookie.

The cookie is `v1.<expires>.<nonce>.<mac>`, signed with a key derived from the API token
(HMAC-SHA256), so it survives a gateway restart, and changing the token ends every session.
It is `HttpOnly` (no script reads it), `SameSite=Strict` (no other site's page makes the
browser send it) and `Secure` when the request came over HTTPS. Logging out clears the
cookie and remembers its nonce until it would have expired anyway, in memory and (by the
caller) in the database, so a restart does not bring a logged-out session back.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time

COOKIE_NAME = "volumeviz_session"
_VERSION = "v1"
_KEY_LABEL = b"volumeviz session key v1"
MAX_REVOKED = 10_000


class SessionSigner:
    def __init__(self, api_token: str, ttl_seconds: float) -> None:
        self._key = hmac.new(api_token.encode(), _KEY_LABEL, hashlib.sha256).digest()
        self.ttl_seconds = ttl_seconds
        self._revoked: dict[str, float] = {}  # nonce -> when it would have expired

    def _mac(self, payload: str) -> str:
        return hmac.new(self._key, payload.encode(), hashlib.sha256).hexdigest()

    def issue(self, now: float | None = None) -> tuple[str, int]:
        """A new cookie value and its expiry (Unix seconds)."""
        expires = int((now or time.time()) + self.ttl_seconds)
        payload = f"{_VERSION}.{expires}.{secrets.token_urlsafe(16)}"
        return f"{payload}.{self._mac(payload)}", expires

    def _parse(self, value: str | None, now: float) -> tuple[str, float] | None:
        """(nonce, expiry) of a genuine, unexpired cookie."""
        if not value or not value.isascii():  # anything a client sent: never raise on it
            return None
        parts = value.split(".")
        if len(parts) != 4 or parts[0] != _VERSION or not parts[1].isdigit():
            return None
        payload = ".".join(parts[:3])
        if not hmac.compare_digest(parts[3].encode(), self._mac(payload).encode()):
            return None
        expires = float(parts[1])
        return (parts[2], expires) if expires > now else None

    def valid(self, value: str | None) -> bool:
        parsed = self._parse(value, time.time())
        return parsed is not None and parsed[0] not in self._revoked

    def restore(self, revoked: dict[str, float]) -> None:
        """The logouts a previous run stored (nonce -> expiry)."""
        self._revoked.update(revoked)

    def revoke(self, value: str | None) -> tuple[str, float] | None:
        """Refuse this cookie from now on; its (nonce, expiry) for the caller to store, or
        None when it was no valid session anyway."""
        now = time.time()
        parsed = self._parse(value, now)
        if parsed is None:
            return None
        if len(self._revoked) >= MAX_REVOKED:
            self._revoked = {n: exp for n, exp in self._revoked.items() if exp > now}
            if len(self._revoked) >= MAX_REVOKED:  # all still live: drop the oldest
                del self._revoked[min(self._revoked, key=self._revoked.__getitem__)]
        self._revoked[parsed[0]] = parsed[1]
        return parsed
