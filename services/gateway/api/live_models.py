"""The live tracker's state as `GET /api/v1/scheduler` and health show it (issue 13)."""

from __future__ import annotations

from pydantic import BaseModel, Field


class LiveTrackerOut(BaseModel):
    enabled: bool = Field(description="VV_LIVE_SIZES is not off")
    active: bool = Field(description="a tracker is heard and follows the volumes")
    mode: str = Field(
        description="filesystem (one fanotify mark on the volumes' filesystem), "
        "directories (each volume directory marked, where the filesystem mark is not "
        "allowed: reason says why), unavailable (reason says why), starting, no tracker, "
        "or off"
    )
    reason: str | None
    tracker_id: str | None
    followed_volumes: int = Field(description="volumes whose figures are live and exact")
    pending_volumes: int = Field(description="waiting for a full read (first, or again)")
    not_followable_volumes: int = Field(description="outside the followed filesystem: walks")
    events_per_second: float = Field(description="file-system events, over the last 10 s")
    events_total: int
    lost_event_resyncs: int = Field(description="volumes read again because events were lost")
    directories: int = Field(description="directories followed")
    bytes_per_directory: float = Field(description="the tracker's memory per directory")
    resends: int = Field(description="times the gateway asked for every figure again")


class LiveTrackingOut(LiveTrackerOut):
    hosts: dict[str, LiveTrackerOut] | None = Field(
        None,
        description="on a gateway of many hosts, each host's tracker (the fields above are "
        "their sum; mode names the modes and on how many hosts they are active)",
    )
