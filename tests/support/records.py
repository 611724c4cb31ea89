"""Volume records as a watcher would publish them, for tests of the gateway's read model."""

from __future__ import annotations

from datetime import UTC, datetime

from common.messages import VolumeRecord


def volume_record(name: str, driver: str = "local") -> VolumeRecord:
    return VolumeRecord(
        name=name,
        driver=driver,
        mountpoint=f"/var/lib/docker/volumes/{name}/_data",
        created_at=datetime(2026, 1, 1, tzinfo=UTC),
        scope="local",
        labels={},
        options={},
        attachments=(),
    )
