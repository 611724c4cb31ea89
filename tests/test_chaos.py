"""Issue 4: 200 scan requests over 50 volumes while services are SIGKILLed and restarted.

At the end every scan a client was told about has exactly one terminal message on the
(resuming) WebSocket: zero lost, zero duplicated, counted and printed.
"""

from __future__ import annotations

import random
import threading
import time

import httpx

from tests.support.api import scans_quiet
from tests.support.engine import PrivateEngine
from tests.support.processes import SERVICES, Stack
from tests.support.scan_tracker import ScanTracker
from tests.support.trees import make_many_files, mountpoint
from tests.support.waiting import wait_until

VOLUMES = 50
REQUESTS = 200
CHAOS_SECONDS = 60.0


def _request_scans(stack: Stack, names: list[str], told: set[str], rng: random.Random) -> None:
    """200 async refreshes, retried while the gateway is down or no scanner is alive."""
    for _ in range(REQUESTS):
        volume = rng.choice(names)
        for _attempt in range(100):
            try:
                response = httpx.post(
                    f"{stack.base_url}/api/v1/volumes/{volume}/size/refresh",
                    json={"async": True},
                    timeout=5,
                )
            except httpx.TransportError:
                time.sleep(0.1)
                continue
            if response.status_code == 202:
                told.add(response.json()["scan_id"])
                break
            # 503: no scanner alive (restarting); 429: the per-client limit, honoured
            assert response.status_code in (429, 503), response.text
            time.sleep(float(response.headers.get("Retry-After", "0.1")))
        time.sleep(CHAOS_SECONDS / REQUESTS / 2)


def _chaos(stack: Stack, stop: threading.Event, rng: random.Random, kills: list[str]) -> None:
    while not stop.wait(rng.uniform(2.0, 4.0)):
        name = rng.choice(SERVICES)
        stack[name].kill()
        kills.append(name)
        time.sleep(rng.uniform(0.2, 1.0))
        stack[name].start()


def _churn_volumes(engine: PrivateEngine, stop: threading.Event) -> None:
    index = 0
    while not stop.wait(0.5):
        engine.client.volumes.create(f"vv-churn-{index}")
        if index >= 2:
            engine.client.volumes.get(f"vv-churn-{index - 2}").remove()
        index += 1


def test_chaos_loses_and_duplicates_no_terminal_message(
    engine: PrivateEngine, stack: Stack
) -> None:
    rng = random.Random(20261125)
    names = [f"vv-chaos-{index:02d}" for index in range(VOLUMES)]
    for index, name in enumerate(names):
        engine.client.volumes.create(name)
        make_many_files(mountpoint(engine, name), 8000 if index % 5 == 0 else 300)
    # One client sends all 200 requests: lift its scan rate limit, which is not under test.
    stack.configure(VV_HEARTBEAT_INTERVAL=0.3, VV_SCAN_REQUESTS_PER_MINUTE=6000)
    stack.start()
    stack.wait_http_ready()

    told: set[str] = set()
    kills: list[str] = []
    stop = threading.Event()
    with ScanTracker(stack.ws_url) as tracker:
        chaos = threading.Thread(target=_chaos, args=(stack, stop, rng, kills), daemon=True)
        churn = threading.Thread(target=_churn_volumes, args=(engine, stop), daemon=True)
        chaos.start()
        churn.start()
        try:
            _request_scans(stack, names, told, rng)
        finally:
            stop.set()
            chaos.join(10)
            churn.join(10)
        for name in SERVICES:
            if not stack[name].alive:
                stack[name].start()
        stack.wait_http_ready()
        wait_until(
            lambda: not tracker.counts(told)[0],
            60,
            message=lambda: f"scans without a terminal message: {tracker.counts(told)[0][:10]}",
        )
        # Nothing left to do anywhere, then a barrier: a duplicate of anything already
        # broadcast would have reached the tracker before its pong.
        wait_until(lambda: scans_quiet(stack), 60, message="scans still queued or running")
        tracker.barrier()
        lost, duplicated = tracker.counts(told)

    outcomes = [
        tracker.outcomes(scan_id)[0]["type"] for scan_id in told if tracker.outcomes(scan_id)
    ]
    print(
        f"chaos: requests={REQUESTS} scans_told={len(told)} kills={len(kills)} "
        f"({', '.join(f'{n}={kills.count(n)}' for n in SERVICES)}) "
        f"completed={outcomes.count('scan_complete')} errors={outcomes.count('scan_error')} "
        f"lost={len(lost)} duplicated={len(duplicated)} ws_connections={tracker.connections}"
    )
    assert kills, "the chaos thread never killed anything"
    assert lost == [] and duplicated == []
