"""File names as JSON text: a name is bytes and need not be UTF-8.

`escape_name` decodes UTF-8 and writes every byte that is not part of valid UTF-8 as `%XX`
(two upper-case hex digits), and a literal `%` as `%25`; nothing else changes, so a name
that is valid UTF-8 without `%` reads as itself. `unescape_path` reverses it exactly, so a
path the API gave out, sent back in `?path=`, names the same bytes. The scanner writes
names this way and the gateway reads paths this way.
"""

from __future__ import annotations

import re

_ESCAPE = re.compile(r"%([0-9A-Fa-f]{2})")


def escape_name(name: bytes) -> str:
    text = name.decode("utf-8", "surrogateescape").replace("%", "%25")
    if not any("\udc80" <= char <= "\udcff" for char in text):
        return text
    return "".join(
        f"%{ord(char) - 0xDC00:02X}" if "\udc80" <= char <= "\udcff" else char for char in text
    )


def unescape_path(text: str) -> bytes:
    """The bytes an escaped name or path stands for (a `%` not followed by two hex digits
    stands for itself)."""
    out = bytearray()
    at = 0
    for match in _ESCAPE.finditer(text):
        out += text[at : match.start()].encode("utf-8", "surrogateescape")
        out.append(int(match.group(1), 16))
        at = match.end()
    out += text[at:].encode("utf-8", "surrogateescape")
    return bytes(out)
