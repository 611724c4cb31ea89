"""REST shapes of the contract (shared/contract/API.md) as typed schemas.

The same models validate requests, document responses in the OpenAPI document, and name the
fields the dashboard reads.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal, cast

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from common.messages import ResultMethod, ScanErrorCode, ScanMethod, ScanResultData
from services.gateway.api.live_models import LiveTrackingOut
from services.gateway.readmodel.query import VolumeListQuery, needs_zone, rfc3339_text


class ErrorBody(BaseModel):
    code: str
    message: str
    error: str = Field(description="the same text as message, for clients that read `error`")
    request_id: str
    details: dict[str, Any] | None = None


class AttachmentOut(BaseModel):
    container_id: str
    container_name: str
    mount_path: str
    rw: bool
    state: str


class ScanResultOut(ScanResultData):
    """The bus's scan result as clients see it: plus whether it came from the store."""

    cache_hit: bool


class VolumeOut(BaseModel):
    id: str = Field(description="the name; `<host>/<name>` on a gateway of many hosts")
    volume_id: str
    name: str
    host: str | None = Field(None, description="the host whose engine has it (many hosts)")
    host_stale: bool = Field(
        False, description="its host's agent is silent: this is as of host_last_contact_at"
    )
    host_last_contact_at: datetime | None = None
    driver: str
    mountpoint: str
    created_at: datetime
    scope: str
    labels: dict[str, str]
    options: dict[str, str]
    size_bytes: int | None
    disk_usage_bytes: int | None
    file_count: int | None
    last_scan_at: datetime | None
    size_source: Literal["walk", "du", "live"] | None = Field(
        description="what measured the figures: the native walk, du, the live tracker "
        "(kept current from file-system events since a full read), or nothing yet"
    )
    size_updated_at: datetime | None = Field(
        None, description="when the figures were last current (a walk's end, a live change)"
    )
    size_stale: bool = Field(
        False, description="live figures that events were lost for: being read again"
    )
    attachments_count: int
    is_orphaned: bool
    is_system: bool
    is_active: bool
    status: str


class VolumeDetailOut(VolumeOut):
    attachments: list[AttachmentOut]
    last_scan: ScanResultOut | None


class VolumeListOut(BaseModel):
    data: list[VolumeOut]
    page: int
    page_size: int
    total: int
    sort: str
    filters: dict[str, Any]


class OrphanedReportQuery(VolumeListQuery):
    sort: str = Field("size_bytes:desc", max_length=512, description="field:dir[,field:dir...]")


class OrphanedReportOut(VolumeListOut):
    total_size_bytes: int = Field(description="sum of size_bytes of every match (reclaimable)")
    total_disk_usage_bytes: int = Field(description="sum of disk_usage_bytes of every match")
    unscanned: int = Field(description="matches never scanned, so not in the totals")


class AttachmentListOut(BaseModel):
    data: list[AttachmentOut]
    total: int


class HealthCheckOut(BaseModel):
    status: Literal["ok", "degraded", "down"]
    message: str
    age_seconds: float | None = None


class HostOut(BaseModel):
    host: str | None = Field(description="its name (VV_HOST_ID, or its engine's)")
    engine_reachable: bool
    engine_error: str | None
    agent_heartbeat_age_seconds: float | None = Field(
        description="since its watcher was last heard; null: never"
    )
    last_contact_at: datetime | None
    stale: bool = Field(description="its agent is silent: its volumes are as last heard")
    volume_count: int
    total_size_bytes: int
    scanner_workers: int


class HostListOut(BaseModel):
    data: list[HostOut]
    total: int
    multi_host: bool = Field(description="a gateway of many hosts (VV_BUS_AUTHORIZED_KEYS)")


class HealthOut(BaseModel):
    status: Literal["healthy", "degraded", "unhealthy"]
    checks: dict[str, HealthCheckOut]
    version: str


class ProbeOut(BaseModel):
    status: str


# --- scans ----------------------------------------------------------------------------


# What a request may name: the methods, and `diskus`, the old backend's name for its fastest
# method, which the dashboard still sends by default: here that is the native walk.
RequestedScanMethod = Literal["native", "du", "diskus"]
METHOD_ALIASES: dict[str, ScanMethod] = {"diskus": "native"}


class _ScanRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    method: RequestedScanMethod = "native"

    @property
    def scan_method(self) -> ScanMethod:
        """The method that runs (the result reports it)."""
        return METHOD_ALIASES.get(self.method) or cast(ScanMethod, self.method)


class RefreshRequest(_ScanRequest):
    async_: bool = Field(False, alias="async")


class BulkScanRequest(_ScanRequest):
    volume_ids: list[str] | None = Field(None, max_length=10_000)
    all: bool = False


class ScanResponseOut(BaseModel):
    volume_id: str
    cached: bool
    result: ScanResultOut


class ScanAcceptedOut(BaseModel):
    scan_id: str
    volume_id: str
    status: str
    status_url: str


class BulkScanOut(BaseModel):
    scan_ids: dict[str, str]
    total: int


class ScanErrorOut(BaseModel):
    code: ScanErrorCode
    message: str


class ScanJobOut(BaseModel):
    scan_id: str
    volume_id: str
    method: ScanMethod
    status: Literal["queued", "running", "completed", "failed"]
    progress: int
    files_processed: int
    current_size: int
    throttled: bool = Field(description="the walk is slowed down because the host is busy")
    attempts: int = Field(description="workers this job has been handed to")
    worker_id: str | None = Field(None, description="the worker it was last handed to")
    requested_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    result: ScanResultOut | None
    error: ScanErrorOut | None


class ScanMethodOut(BaseModel):
    name: RequestedScanMethod
    available: bool
    description: str
    alias_of: ScanMethod | None = Field(None, description="the method this name runs")


class ScanMethodsOut(BaseModel):
    methods: list[ScanMethodOut]
    total: int


# --- history, forecast, scheduler -----------------------------------------------------


class HistoryQuery(BaseModel):
    model_config = ConfigDict(extra="ignore")
    since: datetime | None = None
    until: datetime | None = None
    limit: int = Field(1000, ge=1, le=10_000, description="the latest points in the range")

    _texts = field_validator("since", "until", mode="before")(rfc3339_text)
    _zones = field_validator("since", "until")(needs_zone)

    @model_validator(mode="after")
    def _ordered(self) -> HistoryQuery:
        if self.since is not None and self.until is not None and self.since > self.until:
            raise ValueError("since must not be after until")
        return self


class HistoryPointOut(BaseModel):
    scanned_at: datetime
    total_size: int
    disk_usage: int
    file_count: int
    method: ResultMethod


class HistoryOut(BaseModel):
    volume_id: str
    data: list[HistoryPointOut] = Field(description="oldest first")
    total: int = Field(description="points in the range, before the limit")
    limit: int


class ForecastQuery(BaseModel):
    model_config = ConfigDict(extra="ignore")
    days: int = Field(30, ge=1, le=3650)


class FilesystemOut(BaseModel):
    path: str
    free_bytes: int | None = Field(description="available to unprivileged writers")
    total_bytes: int | None
    error: str | None = Field(description="why the free space is unknown")


class ForecastOut(BaseModel):
    volume_id: str
    days: int
    points: int
    span_days: float
    current_size_bytes: int | None
    growth_bytes_per_day: float | None = Field(description="least-squares slope of total_size")
    growth_stderr_bytes_per_day: float | None
    r_squared: float | None
    confidence: Literal["insufficient_data", "low", "medium", "high"]
    message: str | None
    projected_at: datetime
    projected_size_bytes: int | None
    filesystem: FilesystemOut
    full_at: datetime | None
    full_reason: str


class ScheduleEntryOut(BaseModel):
    volume_id: str
    last_scan_at: datetime | None
    next_scan_at: datetime | None
    queued: bool


class WorkerOut(BaseModel):
    worker_id: str
    host: str | None = Field(None, description="the host whose pool it is in (many hosts)")
    ready: bool = Field(description="it asks for work: idle, and the host's load allows")
    scan_id: str | None = Field(description="the job it holds")
    throttled: bool = Field(description="its walk is slowed down because the host is busy")
    host_busy_percent: float = Field(description="the host's load not counting our scans")
    retired: bool = Field(description="replaced in its pool; it only finishes what it holds")
    heartbeats: int = Field(description="heartbeats received from it")


class StuckVolumeOut(BaseModel):
    volume_id: str
    timeouts: int = Field(description="SCAN_TIMEOUTs in a row")
    last_error: str
    stuck_at: datetime
    retry_at: datetime = Field(description="no scan of the volume starts before this")


class AbandonedWorkerOut(BaseModel):
    worker_id: str
    scan_id: str
    volume_id: str
    stuck_since: datetime = Field(description="when its walk last moved")


class SchedulerOut(BaseModel):
    enabled: bool
    interval_seconds: float
    tick_seconds: float
    queue_depth: int
    workers_alive: int
    workers_busy: int
    scheduled_pending: int
    max_pending: int
    due_now: int
    last_run_at: datetime | None
    next_run_at: datetime | None
    workers: list[WorkerOut] = Field(description="every scanner worker the gateway hears")
    stuck_volumes: list[StuckVolumeOut] = Field(
        description="volumes whose scans timed out (a hung filesystem), and their back-off"
    )
    abandoned_workers: list[AbandonedWorkerOut] = Field(
        description="workers left behind in a walk that stopped moving; not pool slots"
    )
    schedule: list[ScheduleEntryOut]
    live_interval_seconds: float = Field(
        description="how often a volume the live tracker follows is still walked"
    )
    live: LiveTrackingOut
