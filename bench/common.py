"""What every benchmark shares: the engine and the services, statistics, the report.

Each script answers one question of docs/PERFORMANCE.md. It starts what it needs (a private
dockerd from tests/support, the services as real processes through `Stack`), measures our
figure and the peer's side by side in the same run (interleaved rounds; ratios and medians,
never one absolute time), prints one row per figure and exits 2 when it could not measure.
Run one as `python -m bench.<name> [options]` from the repository root.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import docker
import httpx
import psutil

from tests.support.engine import PrivateEngine
from tests.support.processes import SERVICES, Stack
from tests.support.waiting import wait_until

BENCH_LABEL = "volumeviz.bench"
API = "/api/v1"


class CouldNotMeasure(RuntimeError):
    """The figure cannot be taken here (no root, no dockerd, a service that never came up)."""


# --- statistics -------------------------------------------------------------------------


def percentile(values: Sequence[float], fraction: float) -> float:
    """Linear interpolation between closest ranks (fraction 0.99 is p99)."""
    if not values:
        raise CouldNotMeasure("no samples")
    ordered = sorted(values)
    position = (len(ordered) - 1) * fraction
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def median(values: Sequence[float]) -> float:
    if not values:
        raise CouldNotMeasure("no samples")
    return statistics.median(values)


def seconds(value: float) -> str:
    if value >= 1:
        return f"{value:.3f} s"
    return f"{value * 1000:.2f} ms"


def timed(action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


# --- the report -------------------------------------------------------------------------


@dataclass
class Row:
    metric: str
    ours: str
    peer: str = "-"
    ratio: float | None = None  # ours / peer, the figure the target is about when set
    target: str = "-"
    met: bool | None = None
    note: str = ""


@dataclass
class Report:
    question: str
    command: str = field(
        default_factory=lambda: " ".join(
            [f"python -m bench.{Path(sys.argv[0]).stem}", *sys.argv[1:]]
        )
    )
    rows: list[Row] = field(default_factory=list)

    def add(self, row: Row) -> Row:
        self.rows.append(row)
        print(f"[{self.question}] {format_row(row)}", flush=True)
        return row

    def table(self) -> str:
        return "\n".join([*TABLE_HEADER, *markdown_rows(self.question, self.rows)])


TABLE_HEADER = (
    "| question | metric | ours | peer (same run) | ours/peer | target | met |",
    "|---|---|---|---|---|---|---|",
)


def markdown_rows(question: str, rows: Sequence[Row]) -> list[str]:
    lines = []
    for row in rows:
        ratio = f"{row.ratio:.2f}" if row.ratio is not None else "-"
        met = {True: "yes", False: "**no**", None: "-"}[row.met]
        note = f" ({row.note})" if row.note else ""
        lines.append(
            f"| {question} | {row.metric}{note} | {row.ours} | {row.peer} | {ratio} "
            f"| {row.target} | {met} |"
        )
    return lines


def format_row(row: Row) -> str:
    parts = [f"{row.metric}: ours {row.ours}", f"peer {row.peer}"]
    if row.ratio is not None:
        parts.append(f"ours/peer {row.ratio:.2f}")
    if row.target != "-":
        parts.append(f"target {row.target} -> {'met' if row.met else 'NOT met'}")
    if row.note:
        parts.append(row.note)
    return " | ".join(parts)


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    memory = psutil.virtual_memory().total / 2**30
    return (
        f"{os.cpu_count()} CPUs ({cpu}), {memory:.0f} GiB, Linux {platform.release()}, "
        f"Python {platform.python_version()}, load average {os.getloadavg()[0]:.2f}"
    )


def common_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--docker-host",
        help="use this engine (unix://...) instead of starting a private dockerd; only the "
        "volumes the benchmark created are removed afterwards",
    )
    parser.add_argument("--json", type=Path, help="also write the rows here as JSON")


def run(
    question: str,
    parser: argparse.ArgumentParser,
    measure: Callable[[argparse.Namespace, Report], None],
    argv: Sequence[str] | None = None,
) -> int:
    """Parse options, measure, print the rows; 0 when measured, 2 when it could not be."""
    common_options(parser)
    args = parser.parse_args(argv)
    report = Report(question)
    print(f"[{question}] machine: {machine()}", flush=True)
    try:
        measure(args, report)
    except CouldNotMeasure as error:
        print(f"[{question}] could not measure: {error}", file=sys.stderr, flush=True)
        return 2
    except Exception:
        traceback.print_exc()
        print(f"[{question}] could not measure: the benchmark failed", file=sys.stderr)
        return 2
    if not report.rows:
        print(f"[{question}] could not measure: no figures", file=sys.stderr)
        return 2
    print(report.table(), flush=True)
    if args.json is not None:
        args.json.write_text(
            json.dumps(
                {
                    "question": question,
                    "command": report.command,
                    "machine": machine(),
                    "rows": [asdict(row) for row in report.rows],
                },
                indent=2,
            )
        )
    return 0


# --- the engine ---------------------------------------------------------------------------


@dataclass
class Engine:
    """A Docker engine for one benchmark: a private dockerd, or the one named by --docker-host."""

    host: str
    client: docker.DockerClient

    @property
    def api(self) -> docker.APIClient:
        return self.client.api

    @property
    def socket_path(self) -> str:
        return self.host.removeprefix("unix://")

    def create_volumes(self, names: Sequence[str]) -> None:
        """Create volumes (labelled, so cleanup finds them), eight at a time."""

        def create(name: str) -> None:
            self.api.create_volume(name, labels={BENCH_LABEL: "1"})

        with ThreadPoolExecutor(8) as pool:
            list(pool.map(create, names))

    def mountpoint(self, name: str) -> Path:
        return Path(self.api.inspect_volume(name)["Mountpoint"])

    def remove_bench_volumes(self) -> None:
        listed = self.api.volumes(filters={"label": BENCH_LABEL}) or {}
        names = [volume["Name"] for volume in listed.get("Volumes") or []]
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda name: self.api.remove_volume(name, force=True), names))

    def system_df(self) -> dict[str, Any]:
        """`GET /system/df?type=volume`: the engine's own sizes (older APIs ignore `type`)."""
        if not self.host.startswith("unix://"):
            raise CouldNotMeasure("the engine must be reached over a unix socket")
        transport = httpx.HTTPTransport(uds=self.socket_path)
        with httpx.Client(transport=transport, base_url="http://docker", timeout=300) as http:
            response = http.get("/system/df", params={"type": "volume"})
        response.raise_for_status()
        body: dict[str, Any] = response.json()
        return body


@contextlib.contextmanager
def engine(docker_host: str | None) -> Iterator[Engine]:
    if docker_host:
        client = docker.DockerClient(base_url=docker_host, timeout=300)
        handle = Engine(docker_host, client)
        try:
            yield handle
        finally:
            handle.remove_bench_volumes()
            client.close()
        return
    if os.geteuid() != 0 or shutil.which("dockerd") is None:
        raise CouldNotMeasure("a private dockerd needs root and docker.io (or pass --docker-host)")
    private = PrivateEngine.start()
    try:
        yield Engine(private.host, private.client)
    finally:
        private.stop()


# --- the services -------------------------------------------------------------------------


@contextlib.contextmanager
def services(
    handle: Engine, *names: str, volumes: int = 0, **overrides: str | float | int
) -> Iterator[Stack]:
    """Start the named services (all three by default) and wait until the gateway lists
    `volumes` volumes and, with a scanner, sees every worker; all is removed afterwards."""
    tmp = Path(tempfile.mkdtemp(prefix="vvb-", dir="/tmp"))
    stack = Stack(handle.host, tmp)
    stack.configure(VV_LOG_LEVEL="INFO", **overrides)
    try:
        stack.start(*names)
        try:
            stack.wait_http_ready(timeout=60)
            with stack.http(timeout=30) as http:
                wait_until(
                    lambda: listed_total(http) >= volumes,
                    120,
                    interval=0.2,
                    message=f"the gateway never listed {volumes} volumes",
                    ignore=(httpx.HTTPError,),
                )
                if "scanner" in (names or SERVICES):
                    workers = f"{stack.env.get('VV_SCANNER_WORKERS', 2)} workers alive"
                    wait_until(
                        lambda: scanners_check(http).startswith(workers),
                        60,
                        interval=0.2,
                        message=f"the gateway never saw {workers}",
                        ignore=(httpx.HTTPError,),
                    )
        except AssertionError as error:
            tails = "\n".join(f"--- {title}\n{text}" for title, text in stack.logs_report(20))
            raise CouldNotMeasure(f"services did not come up: {error}\n{tails}") from error
        yield stack
    finally:
        stack.close()
        shutil.rmtree(tmp, ignore_errors=True)


def listed_total(http: httpx.Client) -> int:
    response = http.get(f"{API}/volumes", params={"page_size": 1, "system": "true"})
    response.raise_for_status()
    return int(response.json()["total"])


def scanners_check(http: httpx.Client) -> str:
    message: str = http.get(f"{API}/health").json()["checks"]["scanners"]["message"]
    return message


def pool_cpu_seconds(stack: Stack, name: str) -> float:
    """CPU seconds used so far by a service process and all its children."""
    root = psutil.Process(stack[name].pid)
    total = 0.0
    for process in [root, *root.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):
            times = process.cpu_times()
            total += times.user + times.system
    return total


# --- trees --------------------------------------------------------------------------------


def write_files(directory: Path, count: int) -> None:
    """`count` small files straight into `directory` (through one dir fd: no path lookups).

    One in 16 holds data; the others get their size from ftruncate (sparse, no blocks), so
    a large tree is written in seconds without gigabytes of writeback on a shared disk.
    """
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for index in range(count):
            file_fd = os.open(f"f{index}", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd)
            if index % 16 == 0:
                os.write(file_fd, b"z" * (index % 3000))
            else:
                os.ftruncate(file_fd, index % 7000)
            os.close(file_fd)
    finally:
        os.close(fd)


def fill_flat_tree(root: Path, files: int, per_dir: int = 500) -> None:
    """`files` small files in directories of `per_dir`."""
    for start in range(0, files, per_dir):
        directory = root / f"d{start // per_dir:05d}"
        directory.mkdir()
        write_files(directory, min(per_dir, files - start))


# --- CPU hogs -----------------------------------------------------------------------------

HOG_CODE = (
    "import sys,time\nend=time.monotonic()+float(sys.argv[1])\nwhile time.monotonic()<end:pass"
)


def start_hogs(seconds: float, count: int | None = None) -> list[subprocess.Popen[bytes]]:
    """One busy loop per core, each ending by itself after `seconds`."""
    return [
        subprocess.Popen([sys.executable, "-c", HOG_CODE, str(seconds)])
        for _ in range(count or os.cpu_count() or 1)
    ]


# --- a lean HTTP/1.1 load generator -------------------------------------------------------


async def _read_response(reader: asyncio.StreamReader) -> int:
    """Read one response (Content-Length or chunked); returns the status code."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = {
        name.strip().lower(): value.strip()
        for name, _, value in (line.partition(":") for line in lines[1:] if line)
    }
    if "content-length" in headers:
        await reader.readexactly(int(headers["content-length"]))
    elif headers.get("transfer-encoding", "").lower() == "chunked":
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            await reader.readexactly(size + 2)
            if size == 0:
                break
    return status


async def _load(
    opener: Callable[[], Any], sequence: list[bytes], connections: int, operations: int
) -> tuple[list[float], float]:
    latencies: list[float] = []
    remaining = operations

    async def one_connection() -> None:
        nonlocal remaining
        reader, writer = await opener()
        try:
            while remaining > 0:
                remaining -= 1
                started = time.perf_counter()
                for request in sequence:  # one operation: its requests one after another
                    writer.write(request)
                    status = await _read_response(reader)
                    if status != 200:
                        raise CouldNotMeasure(f"HTTP {status} from the server under load")
                latencies.append(time.perf_counter() - started)
        finally:
            writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(one_connection() for _ in range(connections)))
    return latencies, time.perf_counter() - started


def http_load(
    target: str, path: str | Sequence[str], connections: int, requests: int
) -> tuple[list[float], float]:
    """`requests` GETs of `path` over `connections` keep-alive connections (closed loop).

    With several paths, each operation GETs them all in turn on its connection (a client
    reading every page of a list), and its latency is the whole sequence's. `target` is
    `host:port` or `unix:/path`. Returns (latencies per operation, wall seconds).
    """
    if target.startswith("unix:"):
        socket_path = target.removeprefix("unix:")

        def opener() -> Any:
            return asyncio.open_unix_connection(socket_path, limit=2**24)

        host = "docker"
    else:
        address, port = target.rsplit(":", 1)

        def opener() -> Any:
            return asyncio.open_connection(address, int(port), limit=2**24)

        host = target
    paths = [path] if isinstance(path, str) else list(path)
    sequence = [
        f"GET {one} HTTP/1.1\r\nHost: {host}\r\nAccept: application/json\r\n\r\n".encode()
        for one in paths
    ]
    return asyncio.run(_load(opener, sequence, connections, requests))
