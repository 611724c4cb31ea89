"""Whether WebSocket clients get permessage-deflate. Hypercorn accepts it whenever a client
offers it (browsers always do) and has no setting for it (pgjones/hypercorn#307), so when it
is off the offer is ignored at the handshake: the connection then runs uncompressed, which
RFC 7692 allows a server to choose.

Why off by default: each compressed connection holds its own zlib state (~100 KB) and
compresses every frame for itself. With 1,000 dashboards that is most of the gateway's CPU
and memory (bench/ws: delivery p99 105 -> 38 ms, RSS 288 -> 107 MiB), for messages of a few
hundred bytes on what is usually a local link.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from hypercorn.protocol import ws_stream

_original_accept: Callable[..., Any] = ws_stream.Handshake.accept


def _accept_without_extensions(
    self: ws_stream.Handshake,
    subprotocol: str | None,
    additional_headers: Iterable[tuple[bytes, bytes]],
) -> Any:
    self.extensions = None  # the client's offer, ignored: no extension is negotiated
    return _original_accept(self, subprotocol, additional_headers)


def set_websocket_compression(enabled: bool) -> None:
    """Decide for every WebSocket accepted from now on in this process."""
    ws_stream.Handshake.accept = (  # type: ignore[method-assign]
        _original_accept if enabled else _accept_without_extensions
    )
