"""How busy the host is with work other than our own scans, so scans can yield to it."""

from __future__ import annotations

import os
import threading
import time

import psutil

# Long enough for a stable reading, short enough that a queued job starts soon after a
# CPU hog stops (the worker announces readiness on the first quiet window).
SAMPLE_WINDOW_SECONDS = 0.3


def _read_proc(path: str) -> bytes:
    """A small /proc file in one read: Python's open() adds an fstat, an ioctl and a seek
    to each, and every idle worker reads a dozen of these a second (bench/idle.py)."""
    descriptor = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        return os.read(descriptor, 65536)
    finally:
        os.close(descriptor)


_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _busy_and_total() -> tuple[float, float]:
    """System-wide (busy, total) CPU seconds from the first line of /proc/stat (proc(5):
    user nice system idle iowait irq softirq steal guest guest_nice); guest time is
    already inside user, so it is not counted twice."""
    fields = [int(value) for value in _read_proc("/proc/stat").split(b"\n", 1)[0].split()[1:]]
    guest = sum(fields[8:10])
    total = sum(fields) - guest
    idle = sum(fields[3:5])
    return (total - idle) / _CLOCK_TICKS, total / _CLOCK_TICKS


def pool_tree(root: int) -> list[int]:
    """`root` and its descendants. Read from each thread's /proc/PID/task/TID/children
    (a few small files), not by scanning every process on the host as psutil's children()
    does: sampled twice a second by every idle worker, that scan was most of their cost."""
    found, pending = [root], [root]
    while pending:
        pid = pending.pop()
        try:
            threads = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue  # gone meanwhile
        for tid in threads:
            try:
                children = [
                    int(child) for child in _read_proc(f"/proc/{pid}/task/{tid}/children").split()
                ]
            except FileNotFoundError:
                if not os.path.exists(f"/proc/{pid}/task/{tid}"):
                    continue  # the thread ended
                # A kernel without CONFIG_PROC_CHILDREN: ask psutil (a scan of all pids).
                descendants = psutil.Process(root).children(recursive=True)
                return [root, *(process.pid for process in descendants)]
            except (OSError, ValueError):
                continue
            found += children
            pending += children
    return found


def process_cpu_seconds(pid: int) -> float | None:
    """User and system CPU seconds of `pid` from /proc/PID/stat (one read: psutil's
    Process() and cpu_times() take three, twice a second in every idle worker)."""
    try:
        fields = _read_proc(f"/proc/{pid}/stat").rpartition(b")")[2].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS  # utime, stime: proc(5)


class HostLoad:
    """How much of the CPU our scans leave free is taken by other work, in percent.

    The pool's own CPU time (its parent, every worker and their `du` children) is taken
    out, so a scan never throttles itself. Others' use is measured against the capacity we
    leave them (but at least half the machine): a hog on every core gets only what our
    walk leaves, and must still read as busy, while the gateway's share during a bulk
    scan must not. Readings are cached for a window, so `busy()` is cheap enough to call
    on every walk tick.
    """

    def __init__(
        self,
        threshold_percent: float,
        pool_pid: int | None = None,
        window_seconds: float = SAMPLE_WINDOW_SECONDS,
    ) -> None:
        self.threshold_percent = threshold_percent
        self.window_seconds = window_seconds
        self._pool_pid = pool_pid if pool_pid is not None else os.getpid()
        self._percent = 0.0
        self._sampled_at = time.monotonic()
        self._busy, self._total = _busy_and_total()
        self._own: dict[int, float] = self._own_cpu()
        self._lock = threading.Lock()  # read by the worker's bus thread and its walk thread

    def _own_cpu(self) -> dict[int, float]:
        """CPU seconds used so far by each process of the pool's tree, by pid."""
        seconds: dict[int, float] = {}
        for pid in pool_tree(self._pool_pid):
            used = process_cpu_seconds(pid)
            if used is not None:  # None: exited while we looked, its time is gone either way
                seconds[pid] = used
        return seconds

    def sample(self) -> float:
        """Take a reading now (ignoring the cache) and return the percentage."""
        now = time.monotonic()
        busy, total = _busy_and_total()
        own = self._own_cpu()
        # A pid new since the last reading started inside the window: all its time counts.
        own_delta = sum(used - self._own.get(pid, 0.0) for pid, used in own.items())
        total_delta = total - self._total
        if total_delta > 0:
            own_delta = min(max(own_delta, 0.0), total_delta)
            other = (busy - self._busy) - own_delta
            capacity = max(total_delta - own_delta, total_delta / 2)
            self._percent = min(100.0, max(0.0, 100.0 * other / capacity))
        self._busy, self._total, self._own, self._sampled_at = busy, total, own, now
        return self._percent

    def percent(self, max_age: float | None = None) -> float:
        """The latest reading, refreshed once older than `max_age` (default: the window)."""
        age = self.window_seconds if max_age is None else max(max_age, self.window_seconds)
        with self._lock:
            if time.monotonic() - self._sampled_at >= age:
                return self.sample()
            return self._percent

    def busy(self, max_age: float | None = None) -> bool:
        """Whether other work uses more than the threshold share of what we leave free."""
        return self.percent(max_age) > self.threshold_percent
