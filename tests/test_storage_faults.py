"""Issue 10, the database: a versioned schema upgraded in place, a corrupt or unusable file at
start, and scan jobs that never go backwards (the gateway as a real process)."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from services.gateway.storage.schema import SCHEMA_VERSION
from tests.support.api import start_services, volume_with_file, wait_scanners
from tests.support.engine import PrivateEngine
from tests.support.hung_fs import control, mounted
from tests.support.processes import Stack, pool_children
from tests.support.trees import mountpoint
from tests.support.waiting import wait_until

FIXTURE = Path(__file__).with_name("fixtures") / "store-before-versions.sql"
DATABASE = "volumeviz.sqlite3"


def _gateway(stack: Stack) -> Stack:
    stack.start("gateway")
    stack.wait_http_ready()
    return stack


def _database(stack: Stack) -> dict[str, Any]:
    checks: dict[str, Any] = httpx.get(stack.base_url + "/api/v1/health").json()["checks"]
    return dict(checks["database"])


def _rows(path: Path, query: str) -> list[tuple[Any, ...]]:
    with sqlite3.connect(path) as db:
        return list(db.execute(query))


def test_a_database_from_before_versions_is_upgraded_in_place(stack: Stack) -> None:
    database = stack.data_dir / DATABASE
    with sqlite3.connect(database) as db:
        db.executescript(FIXTURE.read_text())
    assert _rows(database, "PRAGMA user_version") == [(0,)]
    _gateway(stack)
    assert _database(stack)["status"] == "ok"
    assert _rows(database, "PRAGMA user_version") == [(SCHEMA_VERSION,)]
    assert _rows(database, "SELECT COUNT(*) FROM scan_trees") == [(0,)]
    # The job a requeue had resurrected after its finish takes the status its event says.
    stuck = httpx.get(stack.base_url + "/api/v1/scans/scan-stuck").json()
    assert stuck["status"] == "completed"
    assert httpx.get(stack.base_url + "/api/v1/scans/scan-done").json()["status"] == "completed"
    assert httpx.get(stack.base_url + "/api/v1/scans/scan-open").json()["status"] == "queued"
    stack["gateway"].wait_for_log("repaired jobs that had already ended jobs=1")
    assert stack["gateway"].terminate() == 0
    _gateway(stack)  # and it starts again, cleanly, on the upgraded file
    assert _rows(database, "SELECT status FROM scan_jobs WHERE scan_id = 'scan-stuck'") == [
        ("completed",)
    ]


def _corrupt_page(path: Path) -> None:
    """Overwrite the second page (the first table's b-tree) with other bytes."""
    with open(path, "r+b") as file:
        file.seek(4096)
        file.write(os.urandom(4096))


def test_a_corrupt_database_is_moved_aside_and_a_new_one_serves(stack: Stack) -> None:
    database = stack.data_dir / DATABASE
    _gateway(stack)
    assert stack["gateway"].terminate() == 0
    damages: dict[str, Callable[[], object]] = {
        "random bytes": lambda: database.write_bytes(os.urandom(50_000)),
        "truncated": lambda: database.write_bytes(database.read_bytes()[:1000]),
        "header overwritten": lambda: database.write_bytes(
            b"\0" * 100 + database.read_bytes()[100:]
        ),
        "one page overwritten": lambda: _corrupt_page(database),
    }
    for name, damage in damages.items():
        for companion in stack.data_dir.glob(f"{DATABASE}-*"):
            companion.unlink()  # a clean stop leaves none; start each case from the file alone
        damage()
        _gateway(stack)
        check = _database(stack)
        assert check["status"] == "ok" and "moved to" in check["message"], name
        aside = sorted(stack.data_dir.glob(f"{DATABASE}.corrupt-*"))
        assert aside, name
        assert (database.stat().st_mode & 0o777) == 0o600, name  # the new one is ours alone
        stack["gateway"].wait_for_log("database unreadable, moved aside")
        assert httpx.get(stack.base_url + "/api/v1/volumes").status_code == 200
        assert stack["gateway"].terminate() == 0, name
        for moved in aside:
            moved.unlink()
        if name != "one page overwritten":  # the next case damages a good database
            _gateway(stack)
            assert stack["gateway"].terminate() == 0


def test_a_locked_database_is_not_taken_for_a_corrupt_one(stack: Stack) -> None:
    _gateway(stack)
    assert stack["gateway"].terminate() == 0
    holder = sqlite3.connect(stack.data_dir / DATABASE, timeout=0)
    holder.execute("PRAGMA locking_mode = EXCLUSIVE")
    holder.execute("BEGIN EXCLUSIVE")  # another process holds it (a backup tool, say)
    try:
        gateway = stack.process("gateway").start()
        assert gateway.wait(60) == 1
        assert "cannot start: cannot open the database" in gateway.log_text()
        assert not list(stack.data_dir.glob(f"{DATABASE}.corrupt-*"))  # left where it was
    finally:
        holder.rollback()
        holder.close()
    _gateway(stack)


def test_a_database_that_cannot_be_had_stops_the_gateway_with_one_line(stack: Stack) -> None:
    (stack.data_dir / DATABASE).mkdir()  # a directory where the file should be
    gateway = stack.process("gateway").start()
    assert gateway.wait(30) == 1
    log = gateway.log_text()
    assert "cannot start: cannot open the database" in log and "Traceback" not in log
    (stack.data_dir / DATABASE).rmdir()
    with sqlite3.connect(stack.data_dir / DATABASE) as db:
        db.execute("PRAGMA user_version = 99")  # written by a newer version
    gateway = stack.process("gateway").start()
    assert gateway.wait(30) == 1
    assert "schema version 99" in gateway.log_text()
    assert _rows(stack.data_dir / DATABASE, "PRAGMA user_version") == [(99,)]  # untouched


def test_a_requeue_racing_a_finish_never_resurrects_the_job(
    engine: PrivateEngine, stack: Stack
) -> None:
    start_services(stack, VV_SCANNER_WORKERS=1, VV_SCAN_INTERVAL=0)
    volume_with_file(engine, stack, "vv-race", b"r" * 4321)
    held, _ = pool_children(stack)  # the worker
    for process in held:
        process.suspend()  # it takes the job, and holds its outcome while stopped
    with stack.ws() as ws:
        accepted = httpx.post(
            stack.base_url + "/api/v1/volumes/vv-race/size/refresh", json={"async": True}
        )
        scan_id = accepted.json()["scan_id"]
        # The gateway declares the silent worker dead and queues the job again...
        stack["gateway"].wait_for_log(f"requeued scan_id={scan_id}", timeout=30)
        for process in held:
            process.resume()  # ...and the worker comes back with the job's result
        ws.recv_type("scan_complete", timeout=30)
        wait_scanners(stack)
        body = httpx.get(f"{stack.base_url}/api/v1/scans/{scan_id}").json()
        assert body["status"] == "completed" and body["result"]["total_size"] == 4321
        # The worker's outcome was acknowledged: nothing of this scan is left to arrive.
        stack["scanner"].wait_for_log(f"result acknowledged scan_id={scan_id}")
        ws.send_json({"type": "ping"})  # a barrier: whatever was sent before is read by pong
        ws.recv_type("pong", timeout=10)
        outcomes = [
            m
            for m in ws.received
            if m.get("type") in ("scan_complete", "scan_error") and m["data"]["scan_id"] == scan_id
        ]
        assert len(outcomes) == 1
    database = stack.data_dir / DATABASE
    wait_until(
        lambda: (
            _rows(database, f"SELECT status FROM scan_jobs WHERE scan_id = '{scan_id}'")
            == [("completed",)]
        ),
        10,
        message="the job's row did not stay completed",
    )
    assert _rows(database, f"SELECT COUNT(*) FROM scan_events WHERE scan_id = '{scan_id}'") == [
        (1,)
    ]
    assert stack["gateway"].terminate() == 0
    _gateway(stack)  # starts cleanly on that database
    assert httpx.get(f"{stack.base_url}/api/v1/scans/{scan_id}").json()["status"] == "completed"


def test_a_database_locked_past_the_liveness_limit_costs_no_worker(
    engine: PrivateEngine, stack: Stack, tmp_path: Path
) -> None:
    engine.client.volumes.create("vv-locked")
    with mounted(mountpoint(engine, "vv-locked"), tmp_path / "hold.sock") as gate:
        start_services(stack, "vv-locked", VV_SCANNER_WORKERS=1, VV_SCAN_INTERVAL=0)
        # Another process takes the write lock (waiting out any write of the gateway's).
        holder = sqlite3.connect(stack.data_dir / DATABASE, timeout=30)
        holder.execute("BEGIN EXCLUSIVE")
        try:
            with stack.ws() as ws:
                accepted = httpx.post(
                    stack.base_url + "/api/v1/volumes/vv-locked/size/refresh",
                    json={"async": True},
                    timeout=30,  # it waits out SQLite's busy timeout first
                )
                assert accepted.status_code == 503  # nothing can be queued: clear, soon again
                assert accepted.json()["code"] == "STORAGE_BUSY"
                assert accepted.headers["Retry-After"] == "1"
                holder.rollback()
                accepted = httpx.post(
                    stack.base_url + "/api/v1/volumes/vv-locked/size/refresh",
                    json={"async": True},
                    timeout=30,
                )
                scan_id = accepted.json()["scan_id"]
                # The walk is held in its file system while the lock is taken again...
                wait_until(lambda: int(control(str(gate), "blocked")) >= 1, 30)
                holder.execute("BEGIN EXCLUSIVE")
                control(str(gate), "release")  # ...and the scan finishes under the lock
                gateway = stack["gateway"]
                line = (
                    "outcome not stored (database not writable), kept for a resend "
                    f"scan_id={scan_id}"
                )
                gateway.wait_for_log(line, timeout=30)
                # Each attempt waits out SQLite's 5 s busy timeout: a second one means the
                # lock has been held past the 3 s liveness limit.
                wait_until(lambda: gateway.log_text().count(line) >= 2, 30, message="one try")
                holder.rollback()
                done = ws.recv_type("scan_complete", timeout=30)
                assert done["data"]["scan_id"] == scan_id
        finally:
            holder.close()
    log = stack["gateway"].log_text()
    assert "worker lost" not in log and "requeued" not in log and "never started" not in log
    assert httpx.get(f"{stack.base_url}/api/v1/scans/{scan_id}").json()["status"] == "completed"
