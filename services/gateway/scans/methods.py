"""The scan methods this host can run (the scanner runs them; the gateway describes them)."""

from __future__ import annotations

import shutil
from typing import Any


def scan_methods() -> list[dict[str, Any]]:
    return [
        {
            "name": "native",
            "available": True,
            "description": "built-in walk: apparent size (as Docker reports it), disk usage "
            "(as du -s -B1), file and directory counts, largest file, live progress",
        },
        {
            "name": "diskus",
            "available": True,
            "alias_of": "native",
            "description": "the old backend's name for its fastest method, accepted for the "
            "dashboard: runs the native walk (the result says method native)",
        },
        {
            "name": "du",
            "available": shutil.which("du") is not None,
            "description": "the du program on one filesystem: disk usage only "
            "(total_size mirrors disk_usage; counts are 0)",
        },
    ]
