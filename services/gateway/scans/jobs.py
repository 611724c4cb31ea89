"""A scan job as the gateway tracks it, and the JSON shapes of it that clients see."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from common.messages import ScanFailure, ScanResultData
from services.gateway.readmodel.views import result_json, rfc3339
from services.gateway.storage.store import JobRow


@dataclass(slots=True)
class Job:
    row: JobRow
    progress: int = 0
    files_processed: int = 0
    current_size: int = 0
    throttled: bool = False
    worker_id: str | None = None
    done: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def terminal(self) -> bool:
        return self.row.status in ("completed", "failed")


def job_json(row: JobRow, live: Job | None = None) -> dict[str, Any]:
    finished = row.status in ("completed", "failed")
    result = row.result
    return {
        "scan_id": row.scan_id,
        "volume_id": row.volume_id,
        "method": row.method,
        "status": row.status,
        "progress": 100 if row.status == "completed" else (live.progress if live else 0),
        "files_processed": result.file_count + result.directory_count
        if result
        else (live.files_processed if live else 0),
        "current_size": result.total_size if result else (live.current_size if live else 0),
        "throttled": bool(live and live.throttled and not finished),
        "attempts": row.attempts,
        "worker_id": row.worker_id,
        "requested_at": rfc3339(row.requested_at),
        "started_at": rfc3339(row.started_at) if row.started_at else None,
        "finished_at": rfc3339(row.finished_at) if row.finished_at else None,
        "result": result_json(result, cache_hit=False) if result else None,
        "error": row.failure.model_dump() if row.failure else None,
    }


def terminal_event(
    scan_id: str, volume_id: str, result: ScanResultData | None, failure: ScanFailure | None
) -> tuple[str, str, dict[str, Any]]:
    """(volume_id, type, data) of the one terminal WebSocket message of a scan."""
    if result is not None:
        data = {
            "scan_id": scan_id,
            "volume_id": volume_id,
            "cached": False,
            "result": result_json(result, cache_hit=False),
        }
        return volume_id, "scan_complete", data
    assert failure is not None
    data = {"scan_id": scan_id, "error": failure.message, "code": failure.code}
    return volume_id, "scan_error", data
