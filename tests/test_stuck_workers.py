"""Workers that stop answering: a hung filesystem under a walk, a worker stopped mid-walk.

The hung filesystem is real: a FUSE file system (tests/support/hung_fs.py) mounted as a
volume's data, whose directory listings block in the kernel until the test releases them,
as a walk on a dead NFS server does.
"""

from __future__ import annotations

import signal
import sqlite3
from pathlib import Path
from typing import Any

import httpx
import psutil

from tests.support.api import refresh, start_services, volume_with_file
from tests.support.engine import PrivateEngine
from tests.support.hung_fs import FILES, control, mounted
from tests.support.processes import Stack, pool_children
from tests.support.trees import du_bytes, mountpoint
from tests.support.waiting import wait_until

DATABASE = "volumeviz.sqlite3"


def _scheduler(stack: Stack) -> dict[str, Any]:
    body: dict[str, Any] = httpx.get(stack.base_url + "/api/v1/scheduler").json()
    return body


def _scanners(stack: Stack) -> dict[str, Any]:
    check: dict[str, Any] = httpx.get(stack.base_url + "/api/v1/health").json()["checks"][
        "scanners"
    ]
    return check


def _wait_workers_alive(stack: Stack, count: int) -> None:
    """Until health counts `count` workers in the pool's slots (abandoned ones aside)."""
    wait_until(
        lambda: _scanners(stack)["message"].startswith(f"{count} workers alive"),
        30,
        message=lambda: f"the pool is not at {count} workers: {_scanners(stack)}",
    )


def _blocked(control_path: Path) -> int:
    return int(control(str(control_path), "blocked"))


def _workers(stack: Stack) -> list[psutil.Process]:
    """The pool's worker processes (not the resource tracker, nor the live-size tracker)."""
    return pool_children(stack)[0]


def _outcomes(ws_messages: list[dict[str, Any]], scan_id: str) -> list[dict[str, Any]]:
    terminal = ("scan_complete", "scan_error")
    return [m for m in ws_messages if m.get("type") in terminal and m["data"]["scan_id"] == scan_id]


def test_a_hung_filesystem_times_out_and_costs_the_pool_nothing(
    engine: PrivateEngine, stack: Stack, tmp_path: Path
) -> None:
    engine.client.volumes.create("vv-hung")
    with mounted(mountpoint(engine, "vv-hung"), tmp_path / "hung.sock") as gate:
        start_services(
            stack,
            "vv-hung",
            VV_SCANNER_WORKERS=2,
            VV_SCAN_STALL_TIMEOUT=2,
            VV_SCAN_RETRY_BACKOFF=1,
        )
        volume_with_file(engine, stack, "vv-fine", b"f" * 4242)
        with stack.ws() as ws:
            accepted = refresh(stack, "vv-hung", **{"async": True})
            hung = accepted.json()["scan_id"]
            wait_until(lambda: _blocked(gate) == 1, 30, message="the walk never reached the fs")
            # The other worker keeps scanning while one is stuck.
            fine = refresh(stack, "vv-fine")
            assert fine.status_code == 200 and fine.json()["result"]["total_size"] == 4242
            error = ws.recv_until(
                lambda m: m["type"] == "scan_error" and m["data"]["scan_id"] == hung, timeout=30
            )
            assert error["data"]["code"] == "SCAN_TIMEOUT"
            assert "stopped answering" in error["data"]["error"]
        job = httpx.get(f"{stack.base_url}/api/v1/scans/{hung}").json()
        assert job["status"] == "failed" and job["error"]["code"] == "SCAN_TIMEOUT"
        # The forecast's free-space probe hangs too: a bounded wait, then it says so at once.
        forecast = stack.base_url + "/api/v1/volumes/vv-hung/forecast"
        first = httpx.get(forecast, timeout=30).json()["filesystem"]
        assert first["free_bytes"] is None and "did not answer" in first["error"]
        second = httpx.get(forecast, timeout=30).json()["filesystem"]
        assert "has not answered for" in second["error"]

        # A synchronous request waits out the back-off, stalls again: 504 with the error body.
        again = refresh(stack, "vv-hung")
        assert again.status_code == 504, again.text
        assert again.json()["code"] == "SCAN_TIMEOUT" and again.json()["error"]

        scheduler = _scheduler(stack)
        (stuck,) = scheduler["stuck_volumes"]
        assert stuck["volume_id"] == "vv-hung" and stuck["timeouts"] == 2
        assert stuck["retry_at"] > stuck["stuck_at"]
        abandoned = scheduler["abandoned_workers"]
        assert {w["volume_id"] for w in abandoned} == {"vv-hung"} and len(abandoned) == 2
        # The pool is at full strength beside the abandoned ones, and says so.
        _wait_workers_alive(stack, 2)
        scanners = _scanners(stack)
        assert scanners["status"] == "degraded" and "abandoned" in scanners["message"]
        assert len(_workers(stack)) == 4  # two in the slots, two left behind
        assert refresh(stack, "vv-fine").status_code == 200  # the fresh workers scan

        assert control(str(gate), "release") == "released"  # the server answers again
        wait_until(
            lambda: not _scheduler(stack)["abandoned_workers"],
            30,
            message="the abandoned workers never left",
        )
        stack["scanner"].wait_for_log("stuck walk returned, its figures dropped")
        wait_until(lambda: len(_workers(stack)) == 2, 30, message="retired workers still running")

        healed = refresh(stack, "vv-hung")  # after the back-off, it scans normally
        assert healed.status_code == 200, healed.text
        body = healed.json()["result"]
        assert body["total_size"] == sum(FILES.values())
        assert body["file_count"] == len(FILES)
        assert body["disk_usage"] == du_bytes(mountpoint(engine, "vv-hung"))
        assert not _scheduler(stack)["stuck_volumes"]
        assert _scanners(stack)["status"] == "ok"


def test_a_worker_stopped_mid_walk_is_replaced_and_its_late_result_dropped(
    engine: PrivateEngine, stack: Stack, tmp_path: Path
) -> None:
    engine.client.volumes.create("vv-stopped")
    with mounted(mountpoint(engine, "vv-stopped"), tmp_path / "hold.sock") as gate:
        start_services(stack, "vv-stopped", VV_SCANNER_WORKERS=1)
        (first,) = _workers(stack)
        with stack.ws() as ws:
            accepted = refresh(stack, "vv-stopped", **{"async": True})
            scan_id = accepted.json()["scan_id"]
            # The walk is held inside the file system: the stop surely lands mid-walk.
            wait_until(lambda: _blocked(gate) == 1, 30, message="the walk never started")
            first.send_signal(signal.SIGSTOP)
            try:
                stack["gateway"].wait_for_log(f"requeued scan_id={scan_id}", timeout=30)
                stack["scanner"].wait_for_log(f"worker retired slot=0 pid={first.pid}", timeout=30)
                # The replacement takes the job: the pool was at full strength meanwhile.
                stack["gateway"].wait_for_log(
                    f"assigned scan_id={scan_id} volume_id=vv-stopped", timeout=30
                )
                stack["gateway"].wait_for_log("attempt=2", timeout=30)
                assert _scanners(stack)["message"].startswith("1 workers alive")
                control(str(gate), "release")
                done = ws.recv_until(
                    lambda m: m["type"] == "scan_complete" and m["data"]["scan_id"] == scan_id,
                    timeout=30,
                )
                assert done["data"]["result"]["total_size"] == sum(FILES.values())
            finally:
                first.send_signal(signal.SIGCONT)
            # The stopped worker finishes its walk late; its outcome is acknowledged, dropped.
            stack["scanner"].wait_for_log("retired worker exits", timeout=30)
            ws.send_json({"type": "ping"})  # a barrier: all sent before it is read by pong
            ws.recv_type("pong", timeout=10)
            assert len(_outcomes(ws.received, scan_id)) == 1
        log = stack["scanner"].log_text()
        assert log.count(f"result acknowledged scan_id={scan_id}") == 2  # both workers'
        with sqlite3.connect(stack.data_dir / DATABASE) as db:
            events = db.execute(
                "SELECT COUNT(*) FROM scan_events WHERE scan_id = ?", (scan_id,)
            ).fetchone()
            status = db.execute(
                "SELECT status FROM scan_jobs WHERE scan_id = ?", (scan_id,)
            ).fetchone()
        assert events == (1,) and status == ("completed",)
        wait_until(lambda: len(_workers(stack)) == 1, 30, message="the late worker stayed")


def test_abandoned_workers_beyond_the_pool_size_are_killed_oldest_first(
    engine: PrivateEngine, stack: Stack, tmp_path: Path
) -> None:
    """A process stuck in the kernel cannot be waited for; past VV_SCANNER_WORKERS of them
    the oldest gets SIGKILL, so stuck walks never pile up. (A FUSE request the server has
    already read holds its caller until answered, even against SIGKILL: the kill lands
    when the file system answers, and the process never runs Python code again.)"""
    engine.client.volumes.create("vv-piled")
    with mounted(mountpoint(engine, "vv-piled"), tmp_path / "piled.sock") as gate:
        start_services(
            stack,
            "vv-piled",
            VV_SCANNER_WORKERS=1,
            VV_SCAN_STALL_TIMEOUT=2,
            VV_SCAN_RETRY_BACKOFF=1,
        )
        (oldest,) = _workers(stack)
        first = refresh(stack, "vv-piled")
        assert first.status_code == 504 and first.json()["code"] == "SCAN_TIMEOUT"
        stack["scanner"].wait_for_log(f"worker retired slot=0 pid={oldest.pid}", timeout=30)
        _wait_workers_alive(stack, 1)
        (younger,) = (w for w in _workers(stack) if w.pid != oldest.pid)
        # The fresh worker walks into the same hung file system after the back-off.
        second = refresh(stack, "vv-piled")
        assert second.status_code == 504 and second.json()["code"] == "SCAN_TIMEOUT"
        stack["scanner"].wait_for_log(f"worker retired slot=0 pid={younger.pid}", timeout=30)
        stack["scanner"].wait_for_log(f"too many retired workers, killed pid={oldest.pid}")
        assert "killed pid=" + str(younger.pid) not in stack["scanner"].log_text()
        assert _blocked(gate) == 1  # held there still (the server reads one request at a time)

        assert control(str(gate), "release") == "released"
        # The oldest ends by the kill (exit code -9), the younger by itself once released.
        stack["scanner"].wait_for_log(
            f"retired worker exited pid={oldest.pid} exitcode=-9", timeout=30
        )
        stack["scanner"].wait_for_log(
            f"retired worker exited pid={younger.pid} exitcode=0", timeout=30
        )
        wait_until(lambda: len(_workers(stack)) == 1, 30, message="a stuck worker stayed")
        _wait_workers_alive(stack, 1)
        healed = refresh(stack, "vv-piled")  # waits out the back-off, then scans normally
        assert healed.status_code == 200, healed.text
        assert healed.json()["result"]["total_size"] == sum(FILES.values())
