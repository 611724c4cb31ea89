"""One timed run of each thing bench/scan.py compares on the same tree: `du`, gdu, the
engine's df and our walk (in this process, with a tick like the worker's), with their CPU
times and, for a tool run as a process of its own, its peak RSS."""

from __future__ import annotations

import os
import resource
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from bench.common import CouldNotMeasure, Engine
from services.scanner.tree import TreeOptions
from services.scanner.walk import WalkCounters, walk_volume

VOLUME = "vv-bench-scan"
DROP_CACHES = Path("/proc/sys/vm/drop_caches")


@dataclass
class Timing:
    wall: float
    user: float
    system: float
    value: int  # disk usage (du, our walk) or apparent size (the engine)
    total: int = -1  # our walk's total_size
    max_rss: int = 0  # bytes, for a tool run as a process of its own


def run_counted(argv: list[str], name: str) -> Timing:
    """A tool whose first output field is the byte count, with its own CPU times."""
    started = time.perf_counter()
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert process.stdout is not None
    out = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise CouldNotMeasure(f"{name} exited with {process.returncode}")
    value = int(out.split(None, 1)[0])
    return Timing(wall, usage.ru_utime, usage.ru_stime, value, max_rss=usage.ru_maxrss * 1024)


def run_du(flags: list[str], path: Path) -> Timing:
    return run_counted(["du", *flags, "--", str(path)], f"du {flags}")


def run_gdu(path: Path) -> Timing:
    """gdu non-interactive, one filesystem, the total in bytes (its default: disk usage)."""
    return run_counted(["gdu", "-n", "-s", "-p", "-x", "-c", "--no-prefix", str(path)], "gdu")


def run_walk(
    path: Path, implementation: str, tree: TreeOptions | None = None, threads: int = 1
) -> Timing:
    """The walk as the worker runs it: a tick that reads the counters and checks a clock."""
    next_report = [0.0]
    progress: list[tuple[int, int, int]] = []

    def tick(counters: WalkCounters) -> None:
        now = time.monotonic()
        if now >= next_report[0]:  # at most every 250 ms, as the worker reports
            progress.append((counters.entries, counters.file_count, counters.total_size))
            next_report[0] = now + 0.25

    before = resource.getrusage(resource.RUSAGE_SELF)
    started = time.perf_counter()
    outcome = walk_volume(
        str(path), tick, implementation=implementation, tree=tree, threads=threads
    )
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_SELF)
    return Timing(
        wall,
        after.ru_utime - before.ru_utime,
        after.ru_stime - before.ru_stime,
        outcome.disk_usage,
        outcome.total_size,
    )


def run_engine_df(handle: Engine) -> Timing:
    started = time.perf_counter()
    body = handle.system_df()
    wall = time.perf_counter() - started
    sizes = {v["Name"]: v["UsageData"]["Size"] for v in body.get("Volumes") or []}
    return Timing(wall, 0.0, 0.0, int(sizes.get(VOLUME, -1)))


def drop_caches() -> bool:
    try:
        os.sync()
        DROP_CACHES.write_text("3\n")
    except OSError:
        return False
    return True
