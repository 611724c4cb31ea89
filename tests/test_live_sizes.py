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
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
from hypothesis import HealthCheck, given, settings
from prometheus_client.parser import text_string_to_metric_families

from services.scanner.live.figures import walked_figures
from tests.support.api import health, start_services
from tests.support.engine import PrivateEngine
from tests.support.file_changes import (
    DEFAULT_TIMEOUT,
    HARD_LINK,
    LONG_RUN_TIMEOUT,
    Operation,
    apply_change,
    operations,
)
from tests.support.processes import Stack, pool_children
from tests.support.trees import du_bytes, engine_volume_sizes, mountpoint
from tests.support.waiting import wait_until

TEN_MB = 10 * 1000 * 1000
SCANNER_ARGV = (sys.executable, "-m", "services.scanner")
# Examples of the end-to-end property: each goes through the tracker, the bus and the API
# (about a second); tests/test_live_volume.py runs hundreds in-process.
LONG_RUN = os.environ.get("HYPOTHESIS_PROFILE") == "long"
EXAMPLES = 300 if LONG_RUN else 20
PROPERTY_VOLUMES = ("vv-p1", "vv-p2", "vv-p3")


def live_state(stack: Stack) -> dict[str, Any]:
    body: dict[str, Any] = httpx.get(f"{stack.base_url}/api/v1/scheduler").json()["live"]
    return body


def scrape(stack: Stack) -> dict[tuple[str, str], float]:
    """/metrics as {(sample name, its volume label or ""): value}."""
    text = httpx.get(f"{stack.base_url}/metrics").text
    return {
        (sample.name, sample.labels.get("volume", "")): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


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
    tracker = pool_children(stack)[1]
    assert tracker is not None, "no tracker process"
    return tracker


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
        metrics = scrape(stack)
        assert metrics[("volumeviz_volume_size_bytes", "vv-grow")] == TEN_MB
        assert metrics[("volumeviz_live_active", "")] == 1

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


def test_without_the_privilege_the_tracker_follows_directories_and_says_why(
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
    wait_until(lambda: live_state(stack)["mode"] == "directories", 20, message="no mode reported")
    state = live_state(stack)
    assert state["active"] is True and "CAP_SYS_ADMIN" in state["reason"]
    assert "active (directories)" in health(stack)["live_sizes"]["message"]
    root = mountpoint(engine, "vv-nopriv")
    (root / "more").mkdir()
    (root / "more" / "g").write_bytes(b"m" * 4321)  # in a directory marked after it was made
    wait_until(lambda: shows_walk(stack, "vv-nopriv", root), 20, message="never live and exact")


@pytest.fixture
def no_fanotify_groups() -> Iterator[None]:
    """fanotify refused to every process (root too) for the test: neither mark works."""
    limit = Path("/proc/sys/fs/fanotify/max_user_groups")
    before = limit.read_text()
    limit.write_text("0")
    try:
        yield
    finally:
        limit.write_text(before)


def test_where_fanotify_cannot_follow_sizes_come_from_walks_on_the_interval(
    engine: PrivateEngine, stack: Stack, no_fanotify_groups: None
) -> None:
    engine.client.volumes.create("vv-walks")
    root = mountpoint(engine, "vv-walks")
    (root / "f").write_bytes(b"w" * 5000)
    start_services(stack, "vv-walks", VV_SCAN_INTERVAL=20)
    wait_until(lambda: live_state(stack)["mode"] == "unavailable", 20, message="no mode reported")
    state = live_state(stack)
    assert state["active"] is False and "max_user_groups" in state["reason"], state
    assert state["followed_volumes"] == 0
    assert "sizes come from walks" in health(stack)["live_sizes"]["message"]

    def walked() -> bool:
        shown = volume(stack, "vv-walks")
        return bool(shown["size_source"] == "walk" and shown["size_bytes"] == 5000)

    wait_until(walked, 60, message="the scheduled walk never measured the volume")
    schedule = httpx.get(f"{stack.base_url}/api/v1/scheduler").json()["schedule"]
    (entry,) = [entry for entry in schedule if entry["volume_id"] == "vv-walks"]
    last = datetime.fromisoformat(entry["last_scan_at"])
    gap = (datetime.fromisoformat(entry["next_scan_at"]) - last).total_seconds()
    assert gap <= 30, gap  # on VV_SCAN_INTERVAL, not the followed volumes' daily safety net
    (root / "g").write_bytes(b"w" * 7000)  # no event can say so: the next walk does
    wait_until(
        lambda: volume(stack, "vv-walks")["size_bytes"] == 12000,
        60,
        message="the next scheduled walk never saw the change",
    )


@dataclass
class LiveVolumes:
    stack: Stack
    engine: PrivateEngine
    roots: list[Path]


@pytest.fixture
def live_volumes(engine: PrivateEngine, stack: Stack) -> LiveVolumes:
    for name in PROPERTY_VOLUMES:
        engine.client.volumes.create(name)
    start_live(stack, *PROPERTY_VOLUMES)
    return LiveVolumes(stack, engine, [mountpoint(engine, name) for name in PROPERTY_VOLUMES])


def all_exact(stack: Stack, roots: list[Path]) -> None:
    for name, root in zip(PROPERTY_VOLUMES, roots, strict=True):
        exact = functools.partial(shows_walk, stack, name, root)
        wait_until(exact, 15, message=f"{name}'s live figures never equalled a walk")


@pytest.mark.timeout(LONG_RUN_TIMEOUT if LONG_RUN else DEFAULT_TIMEOUT)
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(sequence=operations)
def test_live_figures_equal_a_walk_du_and_the_engine_after_any_changes(
    live_volumes: LiveVolumes, sequence: list[Operation]
) -> None:
    """Each example changes the volumes as they were left by the one before, then waits
    for the gateway's figures to equal a fresh walk; they must equal du and the engine's."""
    stack, roots = live_volumes.stack, live_volumes.roots
    for serial, operation in enumerate(sequence):
        apply_change(roots, operation, serial)
        if operation[0] == HARD_LINK:  # read by the tracker before anything else happens
            all_exact(stack, roots)
    all_exact(stack, roots)
    sizes = engine_volume_sizes(live_volumes.engine)
    for name, root in zip(PROPERTY_VOLUMES, roots, strict=True):
        shown = volume(stack, name)
        assert shown["disk_usage_bytes"] == du_bytes(root), name
        assert shown["size_bytes"] == sizes[name], name


def test_a_killed_tracker_or_gateway_loses_no_change(engine: PrivateEngine, stack: Stack) -> None:
    engine.client.volumes.create("vv-restarts")
    root = mountpoint(engine, "vv-restarts")
    start_live(stack, "vv-restarts")
    first, first_id = tracker_process(stack), live_state(stack)["tracker_id"]
    first.kill()  # the pool starts another, which reads the volume again
    wait_until(lambda: volume(stack, "vv-restarts")["size_stale"], 30, message="never stale")

    def followed_again() -> bool:
        state = live_state(stack)
        return state["tracker_id"] not in (None, first_id) and followed(stack, "vv-restarts")

    wait_until(followed_again, 30, message="the new tracker never followed the volume")
    (root / "after-a-new-tracker").write_bytes(b"t" * 3333)  # seen by its events
    wait_until(lambda: shows_walk(stack, "vv-restarts", root), 30, message="not exact again")
    assert tracker_process(stack).pid != first.pid

    stack["gateway"].terminate()
    (root / "while-no-gateway").write_bytes(b"g" * 4444)  # followed, nobody to tell
    stack["gateway"].start()
    stack.wait_http_ready()
    wait_until(lambda: shows_walk(stack, "vv-restarts", root), 30, message="lost while down")
    assert volume(stack, "vv-restarts")["size_bytes"] == 3333 + 4444


def history(stack: Stack, name: str) -> list[dict[str, Any]]:
    response = httpx.get(f"{stack.base_url}/api/v1/volumes/{name}/history")
    assert response.status_code == 200, response.text
    points: list[dict[str, Any]] = response.json()["data"]
    return points


def test_history_takes_a_live_point_on_a_one_percent_change_not_on_every_change(
    engine: PrivateEngine, stack: Stack
) -> None:
    engine.client.volumes.create("vv-points")
    root = mountpoint(engine, "vv-points")
    (root / "base").write_bytes(b"b" * 1_000_000)
    # A point at most every 30 s, or after 3 s when the size moved by more than 1 %.
    start_live(stack, "vv-points", VV_LIVE_HISTORY_INTERVAL=30)
    wait_until(lambda: len(history(stack, "vv-points")) == 1, 10, message="no first point")
    assert history(stack, "vv-points")[0]["method"] == "live"

    (root / "small").write_bytes(b"s" * 5_000)  # 0.5 %: not a point of its own
    wait_until(lambda: volume(stack, "vv-points")["size_bytes"] == 1_005_000, 10, message="unseen")
    (root / "big").write_bytes(b"g" * 50_000)  # 5 %: a point once 3 s have passed
    wait_until(lambda: len(history(stack, "vv-points")) >= 2, 20, message="no point for 5 %")
    sizes = [point["total_size"] for point in history(stack, "vv-points")]
    assert sorted(sizes) == [1_000_000, 1_055_000]


def test_a_volume_made_again_under_its_name_is_followed_anew(
    engine: PrivateEngine, stack: Stack
) -> None:
    engine.client.volumes.create("vv-again")
    (mountpoint(engine, "vv-again") / "old").write_bytes(b"o" * 1000)
    start_live(stack, "vv-again")
    wait_until(lambda: volume(stack, "vv-again")["size_bytes"] == 1000, 10, message="unseen")
    engine.client.volumes.get("vv-again").remove()
    engine.client.volumes.create("vv-again")  # at once: the same name and mountpoint
    root = mountpoint(engine, "vv-again")
    (root / "new").write_bytes(b"n" * 2000)
    wait_until(lambda: shows_walk(stack, "vv-again", root), 20, message="the old one is followed")
    assert volume(stack, "vv-again")["size_bytes"] == 2000


def test_a_volume_with_driver_options_is_left_to_walks(
    engine: PrivateEngine, stack: Stack, tmp_path: Path
) -> None:
    device = tmp_path / "bound"
    device.mkdir()
    (device / "f").write_bytes(b"d" * 777)
    options = {"type": "none", "o": "bind", "device": str(device)}
    engine.client.volumes.create("vv-bound", driver="local", driver_opts=options)
    engine.client.volumes.create("vv-plain")
    start_live(stack, "vv-plain")
    # One follow set held both (the watcher's first state): the plain one is followed.
    shown = volume(stack, "vv-bound")
    assert shown["size_source"] is None and shown["size_bytes"] is None


def test_followed_volumes_are_walked_daily_the_others_on_the_interval(
    engine: PrivateEngine, stack: Stack, tmp_path: Path
) -> None:
    device = tmp_path / "bound"
    device.mkdir()
    options = {"type": "none", "o": "bind", "device": str(device)}
    engine.client.volumes.create("vv-walked", driver="local", driver_opts=options)
    engine.client.volumes.create("vv-daily")
    # Scheduled scans every 20 s (each volume's first within 20 s of being seen).
    start_services(stack, "vv-walked", "vv-daily", VV_SCAN_INTERVAL=20)
    wait_until(functools.partial(followed, stack, "vv-daily"), 20, message="never followed")

    def scheduled() -> dict[str, dict[str, Any]]:
        body = httpx.get(f"{stack.base_url}/api/v1/scheduler").json()
        return {entry["volume_id"]: entry for entry in body["schedule"]}

    def both_walked() -> bool:
        return all(scheduled()[name]["last_scan_at"] for name in ("vv-walked", "vv-daily"))

    wait_until(both_walked, 60, message="the first scheduled walks never ran")
    entries = scheduled()
    for name, at_most, at_least in (("vv-walked", 30, 0), ("vv-daily", None, 12 * 3600)):
        last = datetime.fromisoformat(entries[name]["last_scan_at"])
        gap = (datetime.fromisoformat(entries[name]["next_scan_at"]) - last).total_seconds()
        assert gap >= at_least and (at_most is None or gap <= at_most), (name, gap)
    assert httpx.get(f"{stack.base_url}/api/v1/scheduler").json()["live_interval_seconds"] == (
        86400
    )
