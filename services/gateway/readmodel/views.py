"""One volume as the API shows it: the watcher's record with the figures that are newest
(the latest scan's or the live tracker's), built once per change, not per request."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from common.messages import LiveSize, ScanResultData, VolumeRecord

_ANONYMOUS = re.compile(r"^[0-9a-f]{64}$")
# Volumes that infrastructure creates for itself rather than a user's application.
_SYSTEM_PREFIXES = ("buildx_buildkit_", "docker-desktop", "docker_desktop", "devcontainer")
_ANONYMOUS_LABEL = "com.docker.volume.anonymous"


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def is_system_volume(record: VolumeRecord) -> bool:
    return (
        bool(_ANONYMOUS.match(record.name))
        or record.name.startswith(_SYSTEM_PREFIXES)
        or _ANONYMOUS_LABEL in record.labels
    )


def result_json(result: ScanResultData, cache_hit: bool) -> dict[str, Any]:
    body = result.model_dump()
    body["scanned_at"] = rfc3339(result.scanned_at)
    body["cache_hit"] = cache_hit
    return body


@dataclass(frozen=True, slots=True)
class VolumeView:
    """One volume as the API shows it, with the values listing sorts and filters on."""

    record: VolumeRecord
    result: ScanResultData | None  # the latest scan's (a walk or du)
    live: LiveSize | None
    json: dict[str, Any]
    is_system: bool
    search_text: str  # lower-cased name, label keys and values, for `q`
    order: tuple[str, str]  # (name, id): the listing's default order

    @classmethod
    def build(
        cls,
        record: VolumeRecord,
        result: ScanResultData | None,
        live: LiveSize | None = None,
        host_silent_since: datetime | None = None,
    ) -> VolumeView:
        """`host_silent_since`: on a gateway of many hosts, when the volume's host was last
        heard, if it is silent now (its figures and attachments are as of then)."""
        attachments = len(record.attachments)
        system = is_system_volume(record)
        figures: ScanResultData | LiveSize | None = result
        if live is not None and (result is None or _live_is_newer(live, result)):
            figures = live
        updated_at = (
            figures.updated_at
            if isinstance(figures, LiveSize)
            else figures.scanned_at
            if figures is not None
            else None
        )
        body: dict[str, Any] = {
            "id": record.id,
            "volume_id": record.id,
            "name": record.name,
            "host": record.host,
            "host_stale": host_silent_since is not None,
            "host_last_contact_at": rfc3339(host_silent_since) if host_silent_since else None,
            "driver": record.driver,
            "mountpoint": record.mountpoint,
            "created_at": rfc3339(record.created_at),
            "scope": record.scope,
            "labels": dict(record.labels),
            "options": dict(record.options),
            "size_bytes": figures.total_size if figures else None,
            "disk_usage_bytes": figures.disk_usage if figures else None,
            "file_count": figures.file_count if figures else None,
            "last_scan_at": rfc3339(result.scanned_at) if result else None,
            # Where the figures come from: a walk (native), du, the tracker, or nothing yet.
            "size_source": _source(figures),
            "size_updated_at": rfc3339(updated_at) if updated_at else None,
            "size_stale": isinstance(figures, LiveSize) and figures.stale,
            "attachments_count": attachments,
            "is_orphaned": attachments == 0,
            "is_system": system,
            "is_active": True,
            "status": "active",
        }
        words = [record.name, *record.labels.keys(), *record.labels.values()]
        order = (record.name, body["id"])
        return cls(record, result, live, body, system, "\n".join(words).lower(), order)

    def sort_value(self, field: str) -> Any:
        if field == "created_at":
            return self.record.created_at
        if field == "last_scan_at":
            return self.result.scanned_at if self.result else None
        return self.json[field]

    def detail_json(self) -> dict[str, Any]:
        body = dict(self.json)
        body["attachments"] = [item.model_dump() for item in self.record.attachments]
        body["last_scan"] = result_json(self.result, cache_hit=True) if self.result else None
        return body


def _live_is_newer(live: LiveSize, result: ScanResultData) -> bool:
    """A walk's figures are of when it started (a change during it may be missing from
    them); du's lack the counts, so live figures win over them."""
    if result.method != "native":
        return True
    started = result.scanned_at - timedelta(microseconds=result.duration // 1000)
    return live.updated_at >= started


def _source(figures: ScanResultData | LiveSize | None) -> str | None:
    if figures is None:
        return None
    if isinstance(figures, LiveSize):
        return "live"
    return {"native": "walk"}.get(figures.method, figures.method)


def live_size(result: ScanResultData) -> LiveSize:
    """A stored live point, as the figures it recorded: stale, as no tracker vouches for
    them until it sends them again."""
    return LiveSize(
        volume_id=result.volume_id,
        total_size=result.total_size,
        disk_usage=result.disk_usage,
        file_count=result.file_count,
        directory_count=result.directory_count,
        updated_at=result.scanned_at,
        stale=True,
    )
