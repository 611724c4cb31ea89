"""Issue 10: the data directory fills up. Writes answer 507 STORAGE_FULL, reads keep working,
health says why, nothing crashes; once there is room again writes resume by themselves, and
an outcome measured meanwhile is stored from the worker's resend (it is not acknowledged
while it cannot be stored)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.api import start_services, volume_with_file
from tests.support.engine import PrivateEngine
from tests.support.processes import Stack, pool_children
from tests.support.waiting import wait_until


@pytest.fixture
def small_data_dir(tmp_path: Path) -> Iterator[Path]:
    """A 16 MiB tmpfs for the database, so filling it is quick."""
    mount = tmp_path / "small"
    mount.mkdir()
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=16m,mode=0700", "tmpfs", str(mount)], check=True
    )
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _fill(directory: Path) -> Path:
    """Write until the file system takes nothing more."""
    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while True:
            os.write(fd, b"\0" * 65536)
    except OSError:
        pass  # ENOSPC: full
    finally:
        os.close(fd)
    return filler


def _database_check(stack: Stack) -> dict[str, str]:
    body = httpx.get(stack.base_url + "/api/v1/health").json()
    return dict(body["checks"]["database"], overall=body["status"])


def test_a_full_data_directory_is_a_clear_state_and_loses_nothing(
    engine: PrivateEngine, stack: Stack, small_data_dir: Path
) -> None:
    start_services(stack, VV_DATA_DIR=str(small_data_dir), VV_SCAN_INTERVAL=0)
    volume_with_file(engine, stack, "vv-full", b"f" * 7777)
    volume_with_file(engine, stack, "vv-full-other", b"o" * 10)
    refresh = stack.base_url + "/api/v1/volumes/vv-full/size/refresh"
    assert httpx.post(refresh, timeout=60).status_code == 200  # room: a scan is stored

    held, _ = pool_children(stack)  # the workers; the live tracker is no scan
    with stack.ws() as ws:
        for process in held:
            process.suspend()  # a scan in flight while the disk fills
        accepted = httpx.post(refresh, json={"async": True})
        assert accepted.status_code == 202, accepted.text
        scan_id = accepted.json()["scan_id"]
        filler = _fill(small_data_dir)
        for process in held:
            process.resume()
        stack["gateway"].wait_for_log(
            f"outcome not stored (database not writable), kept for a resend scan_id={scan_id}",
            timeout=30,
        )
        check = _database_check(stack)
        assert check["status"] == "down" and "writes fail" in check["message"], check
        assert check["overall"] == "degraded"
        refused = httpx.post(stack.base_url + "/api/v1/volumes/vv-full-other/size/refresh")
        assert refused.status_code == 507 and refused.json()["code"] == "STORAGE_FULL"
        assert refused.json()["error"]
        listing = httpx.get(stack.base_url + "/api/v1/volumes/vv-full")  # reads work
        assert listing.status_code == 200 and listing.json()["size_bytes"] == 7777
        assert stack["gateway"].alive

        filler.unlink()  # room again: the worker's next resend is stored
        done = ws.recv_type("scan_complete", timeout=30)
        assert done["data"]["scan_id"] == scan_id
    wait_until(lambda: _database_check(stack)["status"] == "ok", 15, message="still failing")
    stack["gateway"].wait_for_log("database writable again")
    assert httpx.get(f"{stack.base_url}/api/v1/scans/{scan_id}").json()["status"] == "completed"
    assert httpx.post(refresh, timeout=60).status_code == 200
