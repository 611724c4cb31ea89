"""What the broker knows of each scanner worker, and whom it tells of their messages: the
coordinator (jobs) and the live tracking (the trackers sharing the socket)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from common.messages import LiveSizes, LiveStatus, ScanFinished, ScanProgress, StuckWalk


class BrokerListener(Protocol):
    def dispatch(self) -> None: ...
    def progress(self, message: ScanProgress) -> None: ...
    async def finished(self, message: ScanFinished) -> bool: ...
    def job_lost(self, scan_id: str, worker_id: str, worker_died: bool) -> None: ...
    def job_claimed(self, scan_id: str, worker_id: str) -> None: ...
    def job_host(self, scan_id: str) -> str | None: ...


class LiveListener(Protocol):
    def status(self, identity: bytes, message: LiveStatus, host: str | None) -> None: ...
    def sizes(self, identity: bytes, message: LiveSizes, host: str | None) -> None: ...
    def tracker_lost(self, identity: bytes) -> None: ...


@dataclass(slots=True)
class WorkerInfo:
    identity: bytes
    worker_id: str
    last_seen: float
    host: str | None = None  # on a gateway of many hosts: whose volumes it may walk
    ready: bool = False
    throttled: bool = False
    host_busy_percent: float = 0.0
    scan_id: str | None = None  # the job we believe it holds
    heartbeats: int = 0  # received, for clients watching it decide
    retired: bool = False  # replaced in its pool; it only finishes what it holds
    stuck: StuckWalk | None = None  # its walk hangs in a filesystem that stopped answering
    assigned_at: float = 0.0
    # Outcomes it sent that are not stored yet: its job is done, but not ended here.
    pending_outcomes: set[str] = field(default_factory=set)
