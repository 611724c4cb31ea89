"""Issue 16: one gateway, many Docker hosts. Three private engines on this machine, each
with its own watcher and scanner pool as agents on tcp://127.0.0.1 with their own keys
(tests/support/hosts.py), and one gateway admitting the keys it lists."""

from __future__ import annotations

import functools
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import zmq

from common.messages import ScanFinished, ScanResultData, WorkerHeartbeat, encode, utc_now
from tests.support.api import health
from tests.support.engine import PrivateEngine
from tests.support.hosts import HOSTS, Fleet, fleet, key_pair
from tests.support.processes import Stack
from tests.support.trees import du_bytes, mountpoint
from tests.support.waiting import wait_until


@pytest.fixture(scope="module")
def fleet_of_three(
    docker_engine: PrivateEngine, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Fleet]:
    with fleet(docker_engine, tmp_path_factory.mktemp("hosts")) as made:
        yield made


@pytest.fixture
def hosts(fleet_of_three: Fleet) -> Iterator[Fleet]:
    yield fleet_of_three
    for engine in fleet_of_three.engines.values():
        engine.remove_all()


def ids(hosts: Fleet, **query: str) -> set[str]:
    return {volume["id"] for volume in hosts.volumes(**query)}


def volume(hosts: Fleet, name: str, **params: str) -> httpx.Response:
    return httpx.get(f"{hosts.gateway.base_url}/api/v1/volumes/{name}", params=params)


def test_the_listing_shows_every_hosts_volumes_with_their_host(hosts: Fleet) -> None:
    hosts.engines["host-1"].client.volumes.create("vv-shared")
    hosts.engines["host-2"].client.volumes.create("vv-shared")  # two volumes, one name
    hosts.engines["host-3"].client.volumes.create("vv-only3")
    expected = {"host-1/vv-shared", "host-2/vv-shared", "host-3/vv-only3"}
    wait_until(lambda: ids(hosts) == expected, 15, message=lambda: f"listed {ids(hosts)}")
    for shown in hosts.volumes():
        host, _, name = shown["id"].partition("/")
        assert (shown["host"], shown["name"], shown["volume_id"]) == (host, name, shown["id"])
        assert shown["host_stale"] is False and shown["host_last_contact_at"] is None
    assert ids(hosts, host="host-2") == {"host-2/vv-shared"}
    ordered = [v["host"] for v in hosts.volumes(sort="host:desc")]
    assert ordered == ["host-3", "host-2", "host-1"]

    listed = hosts.hosts()
    assert sorted(listed) == list(HOSTS)
    for host, count in (("host-1", 1), ("host-2", 1), ("host-3", 1)):
        entry = listed[host]
        assert entry["volume_count"] == count and entry["engine_reachable"] is True, entry
        assert entry["agent_heartbeat_age_seconds"] is not None and entry["stale"] is False
    assert httpx.get(f"{hosts.gateway.base_url}/api/v1/hosts").json()["multi_host"] is True

    # A name on one host only needs no host; on two it does, and the answer names them.
    assert volume(hosts, "vv-only3").json()["id"] == "host-3/vv-only3"
    ambiguous = volume(hosts, "vv-shared")
    assert ambiguous.status_code == 400 and "host-1, host-2" in ambiguous.json()["message"]
    assert volume(hosts, "vv-shared", host="host-2").json()["host"] == "host-2"
    assert volume(hosts, "vv-shared", host="host-3").status_code == 404
    assert volume(hosts, "vv-shared", host="../etc").status_code == 400


def test_a_volume_made_on_host_2_reaches_the_websocket_with_its_host(hosts: Fleet) -> None:
    with hosts.gateway.ws() as ws:
        ws.recv_type("volume_update")
        made = time.monotonic()
        hosts.engines["host-2"].client.volumes.create("vv-live")
        update = ws.recv_until(
            lambda m: (
                m["type"] == "volume_update" and any(v["id"] == "host-2/vv-live" for v in m["data"])
            ),
            timeout=5,
        )
        seen = time.monotonic() - made
    shown = next(v for v in update["data"] if v["id"] == "host-2/vv-live")
    assert shown["host"] == "host-2" and shown["name"] == "vv-live"
    print(f"engine event on host-2 to volume_update: {seen * 1000:.0f} ms")


def _scanned(hosts: Fleet, scan_id: str) -> dict[str, Any] | None:
    body: dict[str, Any] = httpx.get(f"{hosts.gateway.base_url}/api/v1/scans/{scan_id}").json()
    return body if body["status"] in ("completed", "failed") else None


def test_a_host_3_volume_is_walked_by_host_3s_pool_and_equals_du_there(hosts: Fleet) -> None:
    for host in HOSTS:  # the same name everywhere: only host 3's may be walked
        hosts.engines[host].client.volumes.create("vv-walked")
    root = mountpoint(hosts.engines["host-3"], "vv-walked")
    (root / "data").write_bytes(b"3" * 123_457)
    (root / "sub").mkdir()
    (root / "sub" / "more").write_bytes(b"3" * 4_000)
    wait_until(lambda: len(ids(hosts, q="vv-walked")) == 3, 15, message="not listed on 3 hosts")
    url = f"{hosts.gateway.base_url}/api/v1/volumes/vv-walked/size/refresh"
    accepted = httpx.post(url, params={"host": "host-3"}, json={"async": True})
    assert accepted.status_code == 202, accepted.text
    assert accepted.json()["volume_id"] == "host-3/vv-walked"
    job = wait_until(lambda: _scanned(hosts, accepted.json()["scan_id"]), 30, message="no end")
    assert job is not None and job["status"] == "completed", job
    workers = httpx.get(f"{hosts.gateway.base_url}/api/v1/scheduler").json()["workers"]
    host_of = {worker["worker_id"]: worker["host"] for worker in workers}
    assert host_of[job["worker_id"]] == "host-3", (job["worker_id"], host_of)
    assert job["result"]["disk_usage"] == du_bytes(root)
    assert job["result"]["total_size"] == 127_457
    others = [v for v in hosts.volumes(q="vv-walked") if v["host"] != "host-3"]
    # Never walked (their own hosts' trackers may have read them by now: that is no walk).
    assert [(v["last_scan_at"], v["size_source"] in (None, "live")) for v in others] == [
        (None, True),
        (None, True),
    ]


def _shown(hosts: Fleet, volume_id: str) -> dict[str, Any] | None:
    return next((v for v in hosts.volumes() if v["id"] == volume_id), None)


def _live(hosts: Fleet, volume_id: str, size: int) -> bool:
    shown = _shown(hosts, volume_id)
    return (
        shown is not None
        and shown["size_source"] == "live"
        and shown["size_stale"] is False
        and shown["size_bytes"] == size
    )


def test_each_hosts_tracker_follows_its_own_volumes_live(hosts: Fleet) -> None:
    for host in ("host-1", "host-2"):  # one name, two volumes: each followed by its host
        hosts.engines[host].client.volumes.create("vv-growing")
    for volume_id in ("host-1/vv-growing", "host-2/vv-growing"):
        followed = functools.partial(_live, hosts, volume_id, 0)
        wait_until(followed, 20, message=f"{volume_id} not followed")
    root = mountpoint(hosts.engines["host-2"], "vv-growing")
    (root / "grown").write_bytes(b"2" * 250_001)
    wait_until(
        lambda: _live(hosts, "host-2/vv-growing", 250_001),
        10,
        message=lambda: f"host-2 shows {_shown(hosts, 'host-2/vv-growing')}",
    )
    shown = _shown(hosts, "host-2/vv-growing")
    assert shown is not None and shown["last_scan_at"] is None  # no walk: the tracker's
    assert _live(hosts, "host-1/vv-growing", 0)  # the same name on host 1 is another volume

    def live() -> dict[str, Any]:
        scheduler = httpx.get(f"{hosts.gateway.base_url}/api/v1/scheduler").json()
        state: dict[str, Any] = scheduler["live"]
        return state

    # Each tracker's counts come with its status, on its heartbeat clock.
    wait_until(lambda: live()["followed_volumes"] == 2, 10, message=lambda: f"{live()}")
    state = live()
    assert sorted(state["hosts"]) == list(HOSTS) and state["active"], state
    assert [state["hosts"][host]["followed_volumes"] for host in HOSTS] == [1, 1, 0], state
    assert all(each["active"] for each in state["hosts"].values()), state
    assert health(hosts.gateway)["live_sizes"]["status"] == "ok"


def test_an_agent_with_an_unlisted_key_is_refused_and_logged(hosts: Fleet) -> None:
    hosts.engines["host-1"].client.volumes.create("vv-rogue")
    rogue = hosts.agent("host-x", *key_pair(), hosts.engines["host-1"])
    try:
        rogue.start("watcher")
        hosts.gateway["gateway"].wait_for_log("key not in VV_BUS_AUTHORIZED_KEYS", timeout=15)
        wait_until(lambda: "host-1/vv-rogue" in ids(hosts), 15, message="host-1 not listed")
        assert "host-x" not in hosts.hosts()
        assert all(v["host"] in HOSTS for v in hosts.volumes())
    finally:
        rogue.close()


def test_an_agent_speaking_for_another_host_is_refused(hosts: Fleet) -> None:
    public, secret = hosts.keys["host-1"]
    impostor = hosts.agent("host-2", public, secret, hosts.engines["host-3"])
    try:
        impostor.start("watcher")
        hosts.gateway["gateway"].wait_for_log(
            "its key is listed for host=host-1 but it says host=host-2", timeout=15
        )
    finally:
        impostor.close()


def _stale(hosts: Fleet, host: str) -> bool:
    return bool(hosts.hosts()[host]["stale"])


def test_a_killed_agent_goes_stale_then_converges_when_it_returns(hosts: Fleet) -> None:
    engine, agent = hosts.engines["host-2"], hosts.agents["host-2"]
    engine.client.volumes.create("vv-before")
    wait_until(lambda: "host-2/vv-before" in ids(hosts), 15, message="never listed")
    for service in ("watcher", "scanner"):
        agent[service].kill(children=True)
    wait_until(lambda: _stale(hosts, "host-2"), 15, message="host-2 never went stale")
    checks = health(hosts.gateway)
    assert checks["hosts"]["status"] == "degraded" and "host-2" in checks["hosts"]["message"]
    wait_until(
        lambda: "tracker lost on host-2" in health(hosts.gateway)["live_sizes"]["message"],
        15,
        message=lambda: f"live sizes: {health(hosts.gateway)['live_sizes']}",
    )
    kept = volume(hosts, "vv-before", host="host-2").json()
    assert kept["host_stale"] is True and kept["host_last_contact_at"].endswith("Z")
    assert hosts.hosts()["host-2"]["last_contact_at"] is not None

    engine.client.volumes.create("vv-while-away")
    engine.client.volumes.get("vv-before").remove()
    restarted = time.monotonic()
    agent.start("watcher", "scanner")

    def converged() -> bool:
        listed = {v["id"]: v for v in hosts.volumes(host="host-2")}
        return (
            set(listed) == {"host-2/vv-while-away"}
            and not listed["host-2/vv-while-away"]["host_stale"]
        )

    wait_until(converged, 15, message=lambda: f"host-2 shows {ids(hosts, host='host-2')}")
    print(f"host-2 converged {time.monotonic() - restarted:.2f} s after its agent restarted")
    hosts.wait_heard("host-2")
    assert health(hosts.gateway)["hosts"]["status"] == "ok"
    wait_until(
        lambda: health(hosts.gateway)["live_sizes"]["status"] == "ok",
        15,
        message=lambda: f"live sizes: {health(hosts.gateway)['live_sizes']}",
    )


def test_a_restarted_gateway_reloads_every_host(hosts: Fleet) -> None:
    for host in HOSTS:
        hosts.engines[host].client.volumes.create(f"vv-{host}")
    expected = {f"{host}/vv-{host}" for host in HOSTS}
    wait_until(lambda: ids(hosts) == expected, 15, message="not listed")
    hosts.gateway["gateway"].terminate()
    hosts.gateway.start("gateway")
    hosts.gateway.wait_http_ready()
    wait_until(lambda: ids(hosts) == expected, 15, message=lambda: f"listed {ids(hosts)}")
    hosts.wait_heard(*HOSTS)


def _replace(path: Path, text: str) -> None:
    """Written whole, then renamed over the file (as an editor or a Kubernetes secret)."""
    written = path.with_name(path.name + ".new")
    written.write_text(text)
    written.rename(path)


def test_a_host_added_to_the_key_file_gets_in_and_one_removed_leaves_with_no_restart(
    hosts: Fleet,
) -> None:
    listed = hosts.tmp / "authorized-keys"
    before = listed.read_text()
    public, secret = key_pair()
    hosts.engines["host-1"].client.volumes.create("vv-fourth")
    fourth = hosts.agent("host-4", public, secret, hosts.engines["host-1"])
    gateway = hosts.gateway["gateway"]
    try:
        fourth.start("watcher", "scanner")
        # Refused first (a refused handshake is one ZeroMQ never retries by itself).
        fourth["watcher"].wait_for_log("refused by the gateway", timeout=15)
        _replace(listed, before + f"{public} host-4\n")
        gateway.wait_for_log("reloaded keys=4 added=host-4 removed=-", timeout=15)
        wait_until(
            lambda: "host-4" in hosts.hosts() and hosts.heard("host-4"),
            30,
            message=lambda: f"host-4 not heard: {hosts.hosts()}\n{fourth['watcher'].log_tail(9)}",
        )
        wait_until(lambda: "host-4/vv-fourth" in ids(hosts), 15, message="host-4 not listed")

        _replace(listed, before)
        gateway.wait_for_log("host removed host=host-4", timeout=15)
        assert "host-4" not in hosts.hosts()
        assert not [volume_id for volume_id in ids(hosts) if volume_id.startswith("host-4/")]
        gateway.wait_for_log("dropping agent messages with no listed key", timeout=15)
        assert "host-4" not in hosts.hosts()  # still connected, and counting for nothing
        scheduler = httpx.get(f"{hosts.gateway.base_url}/api/v1/scheduler").json()
        assert sorted(scheduler["live"]["hosts"]) == list(HOSTS)
        assert "host-4" not in {worker["host"] for worker in scheduler["workers"]}
        assert health(hosts.gateway)["live_sizes"]["status"] == "ok"

        _replace(listed, "not-a-key host-1\n")
        gateway.wait_for_log("not reloaded, the keys before stay", timeout=15)
        hosts.wait_heard(*HOSTS)
    finally:
        fourth.close()
        _replace(listed, before)


def test_a_host_removed_from_the_key_file_ends_its_waiting_scan(hosts: Fleet) -> None:
    """Host 5 has a watcher and no scanner pool, so a scan of its volume waits for a
    worker of its own host; when its key leaves the file, that scan ends (its volume is
    gone), as README says, instead of waiting for ever."""
    listed = hosts.tmp / "authorized-keys"
    before = listed.read_text()
    public, secret = key_pair()
    hosts.engines["host-2"].client.volumes.create("vv-fifth")
    fifth = hosts.agent("host-5", public, secret, hosts.engines["host-2"])
    gateway = hosts.gateway["gateway"]
    try:
        _replace(listed, before + f"{public} host-5\n")
        gateway.wait_for_log("reloaded keys=4 added=host-5 removed=-", timeout=15)
        fifth.start("watcher")
        wait_until(lambda: "host-5/vv-fifth" in ids(hosts), 30, message="host-5 not listed")
        url = f"{hosts.gateway.base_url}/api/v1/volumes/vv-fifth/size/refresh"
        accepted = httpx.post(url, params={"host": "host-5"}, json={"async": True})
        assert accepted.status_code == 202, accepted.text
        scan_url = f"{hosts.gateway.base_url}/api/v1/scans/{accepted.json()['scan_id']}"
        assert httpx.get(scan_url).json()["status"] == "queued"  # no worker of host 5

        _replace(listed, before)
        gateway.wait_for_log("host removed host=host-5", timeout=15)
        job = wait_until(
            lambda: _scanned(hosts, accepted.json()["scan_id"]),
            30,
            message=lambda: f"the scan still waits: {httpx.get(scan_url).json()}",
        )
        assert job is not None and job["status"] == "failed", job
        assert job["error"]["code"] == "VOLUME_NOT_FOUND", job
    finally:
        fifth.close()
        _replace(listed, before)


def test_the_gateway_refuses_to_start_with_an_unusable_key_file(
    docker_engine: PrivateEngine, tmp_path: Path, hosts: Fleet
) -> None:
    listed = tmp_path / "keys"
    listed.write_text("not-a-key host-1\n")
    broken = Stack(docker_engine.host, tmp_path / "broken")
    broken.configure(
        VV_BUS_AUTHORIZED_KEYS=str(listed),
        VV_BUS_AGENTS_ENDPOINT=hosts.endpoints["agents"].rsplit(":", 1)[0] + ":1",
        VV_BUS_CURVE_GATEWAY_PUBLIC=hosts.gateway_public,
        VV_BUS_CURVE_GATEWAY_SECRET=key_pair()[1],
    )
    try:
        process = broken.process("gateway").start()
        assert process.wait(20) == 2
        assert "line 1: not a Z85 CurveZMQ public key" in process.log_text()
    finally:
        broken.close()


def test_another_hosts_key_can_neither_end_nor_claim_a_hosts_scan(hosts: Fleet) -> None:
    engine, agent = hosts.engines["host-3"], hosts.agents["host-3"]
    engine.client.volumes.create("vv-guarded")
    (mountpoint(engine, "vv-guarded") / "f").write_bytes(b"g" * 5_555)
    wait_until(lambda: "host-3/vv-guarded" in ids(hosts), 15, message="never listed")
    agent["scanner"].kill(children=True)  # host 3 has no worker: its job stays queued
    wait_until(lambda: hosts.hosts()["host-3"]["scanner_workers"] == 0, 15, message="workers")
    url = f"{hosts.gateway.base_url}/api/v1/volumes/vv-guarded/size/refresh"
    scan_id = httpx.post(url, params={"host": "host-3"}, json={"async": True}).json()["scan_id"]

    # A worker with host 1's key says it ran the job, and finished it with a made-up size.
    forged = ScanFinished(
        scan_id=scan_id,
        volume_id="host-3/vv-guarded",
        worker_id="forged",
        result=ScanResultData(
            volume_id="host-3/vv-guarded", total_size=1, disk_usage=1, file_count=1,
            directory_count=0, largest_file=1, skipped=0, scanned_at=utc_now(),
            method="native", duration=1, filesystem_type="ext4",
        ),
    )  # fmt: skip
    busy = WorkerHeartbeat(worker_id="forged", ready=False, current_scan_id=scan_id)
    context = zmq.Context()
    socket = context.socket(zmq.DEALER)
    public, secret = hosts.keys["host-1"]
    socket.setsockopt(zmq.CURVE_SERVERKEY, hosts.gateway_public.encode())
    socket.setsockopt(zmq.CURVE_PUBLICKEY, public.encode())
    socket.setsockopt(zmq.CURVE_SECRETKEY, secret.encode())
    socket.setsockopt(zmq.LINGER, 0)
    socket.connect(hosts.endpoints["jobs"])
    try:
        socket.send(encode(busy))
        socket.send(encode(forged))
        hosts.gateway["gateway"].wait_for_log(
            f"dropped a report on another host's scan scan_id={scan_id}", timeout=15
        )
    finally:
        socket.close()
        context.term()
    assert _scanned(hosts, scan_id) is None  # still open: nothing forged was taken

    agent.start("scanner")
    job = wait_until(lambda: _scanned(hosts, scan_id), 30, message="never ran on host 3")
    assert job is not None and job["status"] == "completed", job
    assert job["result"]["total_size"] == 5_555
