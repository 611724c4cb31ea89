"""The scanner process against a fake gateway: a real ROUTER socket in the test.

`python -m services.scanner` runs as a real subprocess with one worker; the test plays the
gateway's side of the Paranoid Pirate protocol. Timeouts are generous; nothing asserts
how long anything took.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import pytest
import zmq

from common.messages import (
    BusMessage,
    GatewayHeartbeat,
    ScanAck,
    ScanFinished,
    ScanJob,
    ScanProgress,
    WorkerHeartbeat,
    decode,
    encode,
)
from common.settings import Settings
from services.scanner.load import HostLoad
from services.scanner.worker import ScanWorker
from tests.support.hog import cpu_hog as start_cpu_hog
from tests.support.waiting import wait_until

REPO = Path(__file__).resolve().parents[1]
HEARTBEAT = 0.2  # seconds; liveness is 3 of them
TIMEOUT = 30.0


@dataclass
class FakeGateway:
    """The gateway's ROUTER, with a log of everything received as (identity, message)."""

    router: zmq.Socket[bytes]
    received: list[tuple[bytes, BusMessage]] = field(default_factory=list)
    talk_to: set[bytes] = field(default_factory=set)  # identities we send heartbeats to
    next_beat: float = 0.0

    def send(self, identity: bytes, message: GatewayHeartbeat | ScanJob | ScanAck) -> None:
        self.router.send_multipart([identity, encode(message)])

    def pump(self, seconds: float) -> None:
        """Receive for a while, heartbeating every worker in `talk_to` as a gateway does."""
        deadline = time.monotonic() + seconds
        while True:
            now = time.monotonic()
            if now >= self.next_beat:
                for identity in self.talk_to:
                    self.send(identity, GatewayHeartbeat(instance="test-gateway"))
                self.next_beat = now + HEARTBEAT / 2
            if now >= deadline:
                return
            if self.router.poll(int(min(deadline - now, HEARTBEAT / 2) * 1000)):
                identity, payload = self.router.recv_multipart()
                self.received.append((identity, decode(payload)))

    def wait_for(
        self, predicate: Callable[[bytes, BusMessage], bool], what: str, start: int = 0
    ) -> tuple[bytes, BusMessage]:
        """Pump until a message at index `start` or later matches; return it."""
        checked = start
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            for identity, message in self.received[checked:]:
                if predicate(identity, message):
                    return identity, message
            checked = len(self.received)
            self.pump(0.05)
        raise AssertionError(f"no {what} within {TIMEOUT}s; got {self.received[-5:]!r}")


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[FakeGateway]:
    context = zmq.Context()
    router = context.socket(zmq.ROUTER)
    router.setsockopt(zmq.LINGER, 0)
    router.bind(f"ipc://{tmp_path}/jobs")
    yield FakeGateway(router)
    router.close()
    context.term()


@dataclass
class Scanner:
    process: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@pytest.fixture
def scanner(tmp_path: Path, gateway: FakeGateway) -> Iterator[Scanner]:
    env = {
        **os.environ,
        "VV_BUS_JOBS_ENDPOINT": f"ipc://{tmp_path}/jobs",
        "VV_RUNTIME_DIR": str(tmp_path / "run"),
        "VV_SCANNER_WORKERS": "1",
        "VV_HEARTBEAT_INTERVAL": str(HEARTBEAT),
        "VV_HEARTBEAT_LIVENESS": "3",
        "VV_SCAN_LOAD_THRESHOLD": "100",  # never "busy": these tests are not about load
        "VV_SCAN_ROOTS": str(tmp_path),  # volumes live here, not in an engine's directory
        "VV_LOG_LEVEL": "DEBUG",
    }
    log_path = tmp_path / "scanner.log"
    with open(log_path, "wb") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "services.scanner"],
            cwd=tmp_path,  # no stray .env
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    running = Scanner(process, log_path)
    yield running
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    print(running.log())  # shown by pytest when a test failed


def is_ready_heartbeat(identity: bytes, message: BusMessage) -> bool:
    return isinstance(message, WorkerHeartbeat) and message.ready


def finished(scan_id: str, identity: bytes | None = None) -> Callable[[bytes, BusMessage], bool]:
    def match(sender: bytes, message: BusMessage) -> bool:
        return (
            isinstance(message, ScanFinished)
            and message.scan_id == scan_id
            and (identity is None or sender == identity)
        )

    return match


def make_volume(root: Path) -> None:
    """5 directories of 10 files of 1,000 bytes."""
    for d in range(5):
        (root / f"d{d}").mkdir(parents=True)
        for f in range(10):
            (root / f"d{d}" / f"f{f}").write_bytes(b"v" * 1000)


def du_bytes(path: Path) -> int:
    out = subprocess.run(["du", "-s", "-B1", str(path)], check=True, capture_output=True).stdout
    return int(out.split(b"\t", 1)[0])


def test_scan_progress_result_resent_until_acked(
    tmp_path: Path, gateway: FakeGateway, scanner: Scanner
) -> None:
    volume = tmp_path / "volume"
    make_volume(volume)
    worker, hello = gateway.wait_for(is_ready_heartbeat, "ready heartbeat")
    assert isinstance(hello, WorkerHeartbeat)
    assert hello.worker_id == worker.decode()
    gateway.talk_to.add(worker)

    job = ScanJob(
        scan_id="s1", volume_id="vol1", mountpoint=str(volume), method="native",
        expected_entries=55,
    )  # fmt: skip
    gateway.send(worker, job)
    _, first = gateway.wait_for(finished("s1"), "ScanFinished")
    assert isinstance(first, ScanFinished)
    assert first.failure is None and first.result is not None
    result = first.result
    assert (result.volume_id, result.method) == ("vol1", "native")
    assert result.total_size == 50_000
    assert result.file_count == 50
    assert result.directory_count == 5
    assert result.largest_file == 1000
    assert result.skipped == 0
    assert result.disk_usage == du_bytes(volume)
    assert first.worker_id == worker.decode()

    before_finish = gateway.received[: gateway.received.index((worker, first))]
    progress = [m for _, m in before_finish if isinstance(m, ScanProgress)]
    assert progress and all(p.scan_id == "s1" and 0 <= p.progress <= 99 for p in progress)
    busy = [m for _, m in before_finish if isinstance(m, WorkerHeartbeat) and not m.ready]
    assert any(m.current_scan_id == "s1" for m in busy)

    # Not acknowledged: the same result comes again.
    after_first = gateway.received.index((worker, first)) + 1
    _, again = gateway.wait_for(finished("s1"), "re-sent ScanFinished", start=after_first)
    assert again == first

    gateway.send(worker, ScanAck(scan_id="s1"))
    gateway.pump(HEARTBEAT * 3)  # anything already in flight arrives now
    gateway.received.clear()
    gateway.pump(HEARTBEAT * 8)
    assert not [m for _, m in gateway.received if isinstance(m, ScanFinished)]
    assert any(is_ready_heartbeat(i, m) for i, m in gateway.received)


def test_failures_du_method_and_garbage(
    tmp_path: Path, gateway: FakeGateway, scanner: Scanner
) -> None:
    volume = tmp_path / "volume"
    make_volume(volume)
    worker, _ = gateway.wait_for(is_ready_heartbeat, "ready heartbeat")
    gateway.talk_to.add(worker)

    gateway.router.send_multipart([worker, b"this is not json"])
    gateway.router.send_multipart([worker, b'{"v": 1, "kind": "scan_job"}'])
    missing = ScanJob(
        scan_id="s-missing", volume_id="gone", mountpoint=str(tmp_path / "nope"), method="native"
    )
    gateway.send(worker, missing)
    _, failed = gateway.wait_for(finished("s-missing"), "failure")
    assert isinstance(failed, ScanFinished)
    assert failed.result is None and failed.failure is not None
    assert failed.failure.code == "SCAN_PATH_ERROR"
    gateway.send(worker, ScanAck(scan_id="s-missing"))

    gateway.wait_for(is_ready_heartbeat, "ready again")
    gateway.send(
        worker, ScanJob(scan_id="s-du", volume_id="vol1", mountpoint=str(volume), method="du")
    )
    _, done = gateway.wait_for(finished("s-du"), "du result")
    assert isinstance(done, ScanFinished) and done.result is not None
    assert done.result.method == "du"
    assert done.result.disk_usage == du_bytes(volume)
    assert done.result.total_size == done.result.disk_usage
    assert done.result.file_count == 0
    assert scanner.process.poll() is None
    assert "invalid frame dropped" in scanner.log()


def test_silent_gateway_gets_a_fresh_socket_and_the_result_again(
    tmp_path: Path, gateway: FakeGateway, scanner: Scanner
) -> None:
    volume = tmp_path / "volume"
    make_volume(volume)
    worker, _ = gateway.wait_for(is_ready_heartbeat, "ready heartbeat")
    gateway.send(worker, GatewayHeartbeat(instance="test-gateway"))
    gateway.send(
        worker, ScanJob(scan_id="s2", volume_id="vol1", mountpoint=str(volume), method="native")
    )
    _, first = gateway.wait_for(finished("s2", worker), "ScanFinished")
    # The gateway now says nothing (as if restarting): the worker must reconnect under a
    # new identity and repeat the unacknowledged result there.
    new_worker, again = gateway.wait_for(
        lambda identity, message: identity != worker and finished("s2")(identity, message),
        "ScanFinished from a reconnected worker",
    )
    assert isinstance(again, ScanFinished) and isinstance(first, ScanFinished)
    assert again.result == first.result
    assert "reconnected to gateway" in scanner.log()
    gateway.send(new_worker, ScanAck(scan_id="s2"))


def test_pool_restarts_a_dead_worker_and_stops_on_sigterm(
    gateway: FakeGateway, scanner: Scanner
) -> None:
    worker, _ = gateway.wait_for(lambda i, m: isinstance(m, WorkerHeartbeat), "heartbeat")
    worker_pid = int(worker.decode().rsplit("-", 2)[1])  # ids are host-pid-random
    children = psutil.Process(scanner.process.pid).children()
    assert worker_pid in [child.pid for child in children]
    os.kill(worker_pid, signal.SIGKILL)
    gateway.wait_for(
        lambda identity, m: isinstance(m, WorkerHeartbeat) and identity != worker,
        "heartbeat from the restarted worker",
    )
    assert "worker process died" in scanner.log()

    scanner.process.send_signal(signal.SIGTERM)
    assert scanner.process.wait(TIMEOUT) == 0
    assert "worker stopped" in scanner.log()
    assert "scanner pool stopped" in scanner.log()


def _cpu_seconds(processes: list[psutil.Process]) -> float:
    return sum(sum(p.cpu_times()[:2]) for p in processes)


def _wait_host_cpu_seconds(seconds: float) -> None:
    """Until the host's CPU time (busy and idle, every core) has advanced by `seconds`."""
    start = sum(psutil.cpu_times())
    wait_until(lambda: sum(psutil.cpu_times()) - start >= seconds, 30, message="no CPU time")


def test_host_load_excludes_the_pool_itself() -> None:
    """A CPU hog inside the pool's process tree is the pool's own work: it must not read as
    host load. The same hog, seen by a HostLoad whose pool is another (idle) process, does."""
    bystander = subprocess.Popen(["sleep", "60"])
    try:
        ours = HostLoad(threshold_percent=50.0, pool_pid=os.getpid(), window_seconds=0.0)
        theirs = HostLoad(threshold_percent=50.0, pool_pid=bystander.pid, window_seconds=0.0)
        # A window with no hog (until the host has counted a CPU-second per core): how busy
        # the host already is with other work.
        _wait_host_cpu_seconds(psutil.cpu_count() or 1)
        if ours.sample() > 20.0:
            pytest.skip("the host is busy with other work: any reading would measure it")
        theirs.sample()  # both readings start here
        with start_cpu_hog():  # one busy child of ours per CPU
            # Both readings cover the same window: until the hogs have used a CPU-second.
            hogs = [p for p in psutil.Process().children() if "spawn_main" in " ".join(p.cmdline())]
            wait_until(lambda: _cpu_seconds(hogs) >= 1.0, 30, message="the hogs never ran")
            others_see = theirs.sample()
            pool_sees = ours.sample()
        # The same hog throttles a pool it is not part of, and not the pool it belongs to
        # (other work on the host still counts for both: the suite runs on its own).
        assert others_see >= 80.0, others_see
        assert pool_sees < ours.threshold_percent < others_see, (pool_sees, others_see)
    finally:
        bystander.kill()
        bystander.wait()


class SwitchableLoad(HostLoad):
    """A host load the test turns on and off."""

    def __init__(self) -> None:
        super().__init__(threshold_percent=50.0)
        self.is_busy = True

    def percent(self, max_age: float | None = None) -> float:
        return 90.0 if self.is_busy else 0.0

    def busy(self, max_age: float | None = None) -> bool:
        return self.is_busy


def test_busy_host_throttles_the_walk_and_idle_host_announces_ready(
    tmp_path: Path, gateway: FakeGateway
) -> None:
    volume = tmp_path / "volume"
    (volume / "many").mkdir(parents=True)
    for f in range(10_000):  # 10 ticks, each slowed down while the host is busy
        (volume / "many" / f"f{f}").touch()
    settings = Settings(
        VV_BUS_JOBS_ENDPOINT=f"ipc://{tmp_path}/jobs",
        VV_RUNTIME_DIR=tmp_path / "run",
        VV_HEARTBEAT_INTERVAL=HEARTBEAT,
        VV_SCAN_ROOTS=[str(tmp_path)],
    )
    assert settings.bus_jobs_endpoint == f"ipc://{tmp_path}/jobs"
    load = SwitchableLoad()
    worker = ScanWorker(settings, load=load)

    def run() -> None:
        worker.startup()
        try:
            worker.run()
        finally:
            worker.shutdown()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        identity, hello = gateway.wait_for(
            lambda i, m: isinstance(m, WorkerHeartbeat), "first heartbeat"
        )
        assert isinstance(hello, WorkerHeartbeat) and not hello.ready  # the host is busy
        gateway.talk_to.add(identity)
        # A job arrives anyway (sent before the host got busy): it runs, slowly.
        gateway.send(
            identity,
            ScanJob(scan_id="s3", volume_id="v", mountpoint=str(volume), method="native",
                    expected_entries=10_001),
        )  # fmt: skip
        gateway.wait_for(
            lambda i, m: isinstance(m, ScanProgress) and m.throttled, "throttled progress"
        )
        gateway.wait_for(
            lambda i, m: (
                isinstance(m, WorkerHeartbeat) and m.throttled and m.current_scan_id == "s3"
            ),
            "throttled heartbeat during the walk",
        )
        _, done = gateway.wait_for(finished("s3"), "ScanFinished")
        assert isinstance(done, ScanFinished) and done.result is not None
        assert done.result.file_count == 10_000
        progress = [m for _, m in gateway.received if isinstance(m, ScanProgress)]
        assert [p.progress for p in progress] == sorted(p.progress for p in progress)
        assert max(p.progress for p in progress) <= 99
        gateway.send(identity, ScanAck(scan_id="s3"))

        start = len(gateway.received)
        load.is_busy = False
        gateway.wait_for(is_ready_heartbeat, "ready once the host is quiet", start=start)
    finally:
        worker.request_stop()
        thread.join(TIMEOUT)
    assert not thread.is_alive()


def test_engine_reported_mountpoints_outside_the_volumes_dir_are_refused(
    tmp_path: Path, gateway: FakeGateway, scanner: Scanner
) -> None:
    """Whatever the engine says the mountpoint is, the worker scans only below VV_SCAN_ROOTS."""
    worker, _ = gateway.wait_for(is_ready_heartbeat, "ready heartbeat")
    gateway.talk_to.add(worker)
    hostile = ["/", "/etc", f"{tmp_path}/../..", str(tmp_path), f"{tmp_path}/x/../../etc"]
    for index, path in enumerate(hostile):
        for method in ("native", "du"):
            scan_id = f"hostile-{index}-{method}"
            gateway.wait_for(is_ready_heartbeat, "ready", start=len(gateway.received))
            gateway.send(
                worker,
                ScanJob(
                    scan_id=scan_id,
                    volume_id="evil",
                    mountpoint=path,
                    method=method,
                    volumes_dir="/",  # an engine's word cannot widen VV_SCAN_ROOTS
                ),
            )
            _, done = gateway.wait_for(finished(scan_id), f"outcome of {path}")
            assert isinstance(done, ScanFinished) and done.result is None, path
            assert done.failure is not None and done.failure.code == "SCAN_PATH_ERROR", path
            gateway.send(worker, ScanAck(scan_id=scan_id))
    assert "scan root opened" not in scanner.log()
