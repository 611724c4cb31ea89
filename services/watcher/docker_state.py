"""Reading the Docker engine into typed volume records: pure conversion, no bus."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

import docker
from docker.utils import kwargs_from_env

from common.messages import Attachment, VolumeRecord
from common.settings import HOST_ID, Settings

_EPOCH_START = datetime(1970, 1, 1, tzinfo=UTC)


def make_api_client(settings: Settings) -> docker.APIClient:
    """An engine client; VV_DOCKER_HOST wins, otherwise Docker's own defaults (DOCKER_HOST)."""
    timeout = int(settings.docker_timeout_seconds)
    if settings.docker_host:
        return docker.APIClient(base_url=settings.docker_host, timeout=timeout)
    return docker.APIClient(timeout=timeout, **kwargs_from_env())


def parse_created_at(raw: str | None) -> datetime:
    if not raw:
        return _EPOCH_START
    try:
        parsed = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        return _EPOCH_START
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def _attachments_by_volume(containers: list[dict[str, Any]]) -> dict[str, list[Attachment]]:
    by_volume: dict[str, list[Attachment]] = defaultdict(list)
    for container in containers:
        names = container.get("Names") or [""]
        name = str(names[0]).lstrip("/")
        for mount in container.get("Mounts") or []:
            if mount.get("Type") != "volume" or not mount.get("Name"):
                continue
            by_volume[str(mount["Name"])].append(
                Attachment(
                    container_id=str(container.get("Id", "")),
                    container_name=name,
                    mount_path=str(mount.get("Destination", "")),
                    rw=bool(mount.get("RW", True)),
                    state=str(container.get("State", "unknown")),
                )
            )
    return by_volume


def engine_identity(api: docker.APIClient) -> tuple[str | None, str | None]:
    """Where the engine keeps local volumes (`DockerRootDir/volumes`), and its name (the
    host's, a default host id), each if it says and, for the name, if it can be one."""
    info = api.info() or {}
    root = info.get("DockerRootDir")
    name = str(info.get("Name") or "")
    return (
        f"{str(root).rstrip('/')}/volumes" if root else None,
        name if HOST_ID.fullmatch(name) else None,
    )


def _record(volume: dict[str, Any], attachments: list[Attachment]) -> VolumeRecord:
    return VolumeRecord(
        name=str(volume["Name"]),
        driver=str(volume.get("Driver") or "local"),
        mountpoint=str(volume.get("Mountpoint") or ""),
        created_at=parse_created_at(volume.get("CreatedAt")),
        scope=str(volume.get("Scope") or "local"),
        labels={str(k): str(v) for k, v in (volume.get("Labels") or {}).items()},
        options={str(k): str(v) for k, v in (volume.get("Options") or {}).items()},
        attachments=tuple(sorted(attachments, key=lambda a: a.container_id)),
    )


def read_volume_records(api: docker.APIClient) -> tuple[VolumeRecord, ...]:
    """One consistent-enough view: volumes, then every container (running or not)."""
    volumes = (api.volumes() or {}).get("Volumes") or []
    attachments = _attachments_by_volume(api.containers(all=True) or [])
    records = [_record(volume, attachments.get(str(volume["Name"]), [])) for volume in volumes]
    records.sort(key=lambda record: record.name)
    return tuple(records)


def read_new_volume(api: docker.APIClient, name: str) -> VolumeRecord | None:
    """A volume just created (no container can use it yet: a container that will is
    created after it, and its own event reads everything again); None if already gone."""
    try:
        volume = api.inspect_volume(name)
    except docker.errors.NotFound:
        return None
    return _record(volume, [])
