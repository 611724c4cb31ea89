"""Issue 13, wired: the scanner's tracker keeps followed volumes' figures current from
fanotify events, the gateway shows them (`size_source: live`) and pushes them, with no scan.

Every stack here turns scheduled scans off (VV_SCAN_INTERVAL=0), so a figure that changes
can only have come from the tracker."""

from __future__ import annotations

import functools
import os
import shutil
import signal
import sys
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from services.scanner.live.volume import walked_figures
from tests.support.api import health, start_services
from tests.support.engine import PrivateEngine
from tests.support.processes import Stack
from tests.support.trees import du_bytes, engine_volume_sizes, mountpoint
from tests.support.waiting import wait_until

TEN_MB = 10 * 1000 * 1000
SCANNER_ARGV = (sys.executable, "-m", "services.scanner")


def live_state(stack: Stack) -> dict[str, Any]:
    body: dict[str, Any] = httpx.get(f"{stack.base_url}/api/v1/scheduler").json()["live"]
    return body


def volume(stack: Stack, name: str) -> dict[str, Any]:
    body: dict[str, Any] = httpx.get(f"{stack.base_url}/api/v1/volumes/{name}").json()
    return body


def followed(stack: Stack, name: str) -> bool:
    shown = volume(stack, name)
    return shown.get("size_source") == "live" and shown.get("size_stale") is False


def start_live(stack: Stack, *names: str, **settings: str | float) -> Stack:
    start_services(stack, *names, VV_SCAN_INTERVAL=0, **settings)
    wait_until(lambda: live_state(stack)["active"], 20, message="the tracker never became active")
    for name in names:
        wait_until(functools.partial(followed, stack, name), 20, message=f"{name} never followed")
    return stack


def shows_walk(stack: Stack, name: str, root: Path) -> bool:
    """The gateway's figures equal a fresh walk of the volume now."""
    shown = volume(stack, name)
    walked = walked_figures(str(root))
    return bool(
        shown["size_source"] == "live"
        and shown["size_bytes"] == walked.total_size
        and shown["disk_usage_bytes"] == walked.disk_usage
        and shown["file_count"] == walked.file_count
    )


def tracker_process(stack: Stack) -> psutil.Process:
    pool = psutil.Process(stack["scanner"].pid)
    found = [p for p in pool.children() if "scanner-tracker" in " ".join(p.cmdline()) or p.name()]
    trackers = [p for p in found if _is_tracker(p)]
    assert len(trackers) == 1, [p.cmdline() for p in found]
    return trackers[0]


def _is_tracker(process: psutil.Process) -> bool:
    """The spawned tracker: its parent is the pool and it holds a fanotify descriptor."""
    try:
        return any(
            os.readlink(f"/proc/{process.pid}/fd/{fd}") == "anon_inode:[fanotify]"
            for fd in os.listdir(f"/proc/{process.pid}/fd")
        )
    except OSError:
        return False


def test_written_bytes_reach_the_websocket_without_a_scan(
    engine: PrivateEngine, stack: Stack
) -> None:
    engine.client.volumes.create("vv-grow")
    root = mountpoint(engine, "vv-grow")
    start_live(stack, "vv-grow")
    before = volume(stack, "vv-grow")
    assert before["size_bytes"] == 0 and before["last_scan_at"] is None  # never walked

    with stack.ws() as ws:
        ws.recv_type("volume_update")
        (root / "big").write_bytes(b"v" * TEN_MB)
        grown = ws.recv_until(
            lambda m: (
                m["type"] == "volume_update"
                and any(v["name"] == "vv-grow" and v["size_bytes"] == TEN_MB for v in m["data"])
            ),
            timeout=5,
        )
        shown = next(v for v in grown["data"] if v["name"] == "vv-grow")
        assert shown["size_source"] == "live" and shown["size_updated_at"].endswith("Z")
        assert shown["disk_usage_bytes"] == du_bytes(root)

        (root / "big").unlink()
        ws.recv_until(
            lambda m: (
                m["type"] == "volume_update"
                and any(v["name"] == "vv-grow" and v["size_bytes"] == 0 for v in m["data"])
            ),
            timeout=5,
        )
    scans = httpx.get(f"{stack.base_url}/api/v1/scheduler").json()
    assert scans["queue_depth"] == 0 and all(w["scan_id"] is None for w in scans["workers"])
    # The tracker's counts come with its next heartbeat.
    wait_until(lambda: live_state(stack)["events_total"] > 0, 10, message="no events counted")
    assert health(stack)["live_sizes"]["status"] == "ok"


def test_figures_equal_du_and_the_engine_after_changes_across_volumes(
    engine: PrivateEngine, stack: Stack
) -> None:
    for name in ("vv-la", "vv-lb"):
        engine.client.volumes.create(name)
    a, b = mountpoint(engine, "vv-la"), mountpoint(engine, "vv-lb")
    (a / "keep").write_bytes(b"k" * 5000)
    start_live(stack, "vv-la", "vv-lb")

    (a / "dir" / "deep").mkdir(parents=True)
    (a / "dir" / "deep" / "f").write_bytes(b"x" * 70_000)
    os.link(a / "keep", a / "dir" / "keep-link")  # a hard link counts once
    os.rename(a / "dir", b / "moved")  # a subtree moves across volumes
    os.link(b / "moved" / "deep" / "f", a / "back")  # one inode in both volumes
    with open(b / "moved" / "deep" / "f", "ab") as appended:  # seen through both
        appended.write(b"y" * 10_000)
    os.symlink("/etc", b / "sym")
    os.truncate(a / "keep", 100)

    for name, root in (("vv-la", a), ("vv-lb", b)):
        exact = functools.partial(shows_walk, stack, name, root)
        wait_until(exact, 10, message=f"{name} not exact")
        assert volume(stack, name)["disk_usage_bytes"] == du_bytes(root)
    sizes = engine_volume_sizes(engine)
    assert volume(stack, "vv-lb")["size_bytes"] == sizes["vv-lb"]


def test_lost_events_make_the_volume_stale_then_exact(engine: PrivateEngine, stack: Stack) -> None:
    engine.client.volumes.create("vv-flood")
    root = mountpoint(engine, "vv-flood")
    # The tracker may be stopped longer than the default liveness while the files are made.
    start_live(stack, "vv-flood", VV_HEARTBEAT_LIVENESS=60)
    resyncs = live_state(stack)["lost_event_resyncs"]
    tracker = tracker_process(stack)
    with open("/proc/sys/fs/fanotify/max_queued_events") as limit:
        queue = int(limit.read())
    tracker.send_signal(signal.SIGSTOP)
    try:
        (root / "many").mkdir()
        for index in range(queue + 1000):  # one create each: more than the queue holds
            (root / "many" / f"f{index}").touch()
    finally:
        tracker.send_signal(signal.SIGCONT)
    wait_until(
        lambda: live_state(stack)["lost_event_resyncs"] > resyncs,
        30,
        message="the overflow was never noticed",
    )
    wait_until(lambda: shows_walk(stack, "vv-flood", root), 60, message="never exact again")
    assert volume(stack, "vv-flood")["file_count"] == queue + 1000
    assert volume(stack, "vv-flood")["size_stale"] is False


def test_without_the_privilege_the_tracker_says_so_and_walks_measure(
    engine: PrivateEngine, stack: Stack
) -> None:
    engine.client.volumes.create("vv-nopriv")
    (mountpoint(engine, "vv-nopriv") / "f").write_bytes(b"n" * 1234)
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.fail("setpriv (util-linux) is missing")
    # The scanner as users run it, without CAP_SYS_ADMIN in its bounding set.
    stack.process("scanner", [setpriv, "--bounding-set=-sys_admin", "--", *SCANNER_ARGV])
    start_services(stack, "vv-nopriv")
    wait_until(lambda: live_state(stack)["mode"] == "unavailable", 20, message="no mode reported")
    state = live_state(stack)
    assert state["active"] is False and "CAP_SYS_ADMIN" in state["reason"]
    assert "not active" in health(stack)["live_sizes"]["message"]
    response = httpx.post(
        f"{stack.base_url}/api/v1/volumes/vv-nopriv/size/refresh", json=None, timeout=60
    )
    assert response.status_code == 200, response.text
    shown = volume(stack, "vv-nopriv")
    assert shown["size_source"] == "walk" and shown["size_bytes"] == 1234
