"""One measurement on a thread of its own, so the worker's bus thread keeps its clock.

A filesystem that stops answering (a dead NFS server, a stuck FUSE mount) blocks the
walk inside a system call, where nothing in the process can interrupt it. With the walk
on this thread (the C loop runs without the GIL between ticks) the worker's main thread
still heartbeats, reports progress and sees how long the walk has not moved, so it can end
the job with SCAN_TIMEOUT and leave the stuck thread behind.

The thread touches no socket: it writes counters the main thread reads, and one byte to
`wake_fd` when it ends, so the main thread's poll returns at once.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable

from common.messages import ScanFailure, ScanJob
from services.scanner.cpu_share import CpuShare
from services.scanner.errors import ScanError
from services.scanner.measure import Measurement, measure
from services.scanner.tree import TreeOptions
from services.scanner.walk import WalkCounters

log = logging.getLogger(__name__)

THROTTLE_SLEEP_SECONDS = 0.075  # per walk tick while the host is busy


class ScanCancelled(BaseException):
    """Raised from a tick to stop the walk; not an Exception, so never a failure."""


class ScanThread:
    def __init__(
        self,
        job: ScanJob,
        *,
        scan_roots: list[str],
        tree_options: TreeOptions,
        is_busy: Callable[[], bool],
        cpu_share: CpuShare,
    ) -> None:
        self.job = job
        self._cpu_share = cpu_share
        self._scan_roots = scan_roots
        self._tree_options = tree_options
        self._is_busy = is_busy
        self._cancelled = False
        self._read_fd, self._write_fd = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._thread = threading.Thread(
            target=self._run, name=f"scan-{job.scan_id[:8]}", daemon=True
        )
        # Written by the walk thread, read by the main thread (single assignments).
        self.entries = 0
        self.files_processed = 0
        self.current_size = 0
        self.throttled = False
        self.started_at = time.monotonic()
        self.moved_at = self.started_at  # last time the walk got further
        self.measurement: Measurement | None = None
        self.failure: ScanFailure | None = None

    @property
    def wake_fd(self) -> int:
        """Readable once the walk has ended."""
        return self._read_fd

    def start(self) -> None:
        self.started_at = self.moved_at = time.monotonic()
        self._cpu_share.begin()
        self._thread.start()

    def running(self) -> bool:
        return self._thread.is_alive()

    def said_done(self) -> bool:
        """Whether the walk has written its end to the wake pipe. Then join() it, and do not
        poll again: a loop polling a ready pipe keeps the GIL from the thread's last steps,
        which then wait out the switch interval (3 ms a job, bench/fleet.py)."""
        try:
            return os.read(self._read_fd, 1) == b"x"
        except BlockingIOError:
            return False

    def cancel(self) -> None:
        """Stop at the next tick (a walk stuck in the kernel only sees it if it returns)."""
        self._cancelled = True

    def join(self, timeout_seconds: float) -> bool:
        self._thread.join(timeout_seconds)
        return not self._thread.is_alive()

    def close(self) -> None:
        """Release the wake pipe; only once the thread has ended (it writes to it)."""
        os.close(self._read_fd)
        os.close(self._write_fd)

    def overdue(self, now: float) -> str | None:
        """Why the job has gone past its policy, or None while it is within it."""
        if now - self.started_at > self.job.timeout_seconds:
            return f"the scan ran past its {self.job.timeout_seconds:g} s deadline"
        # du says nothing while it runs, so only the native walk can be seen to stall.
        if self.job.method == "native" and now - self.moved_at > self.job.stall_timeout_seconds:
            return (
                f"no entry walked for {self.job.stall_timeout_seconds:g} s "
                f"(after {self.entries} entries): the filesystem stopped answering"
            )
        return None

    # --- the walk thread ------------------------------------------------------------------

    def _run(self) -> None:
        self.throttled = self._is_busy()  # the walk's first threads obey the host's load too
        try:
            self.measurement = measure(
                self.job,
                self._scan_roots,
                tree_options=self._tree_options,
                on_walk_tick=self._on_walk_tick,
                is_busy=self._is_busy,
                on_du_poll=self._on_du_poll,
                walk_threads=self._cpu_share.limit,
                threads_allowed=self._threads_allowed(),
            )
        except ScanCancelled:
            pass
        except ScanError as exc:
            self.failure = ScanFailure(code=exc.code, message=exc.message)
        except Exception as exc:  # a scan must never take the worker down
            log.exception("scan crashed scan_id=%s", self.job.scan_id)
            self.failure = ScanFailure(code="SCAN_FAILED", message=f"{type(exc).__name__}: {exc}")
        finally:
            self._cpu_share.end()
            os.write(self._write_fd, b"x")

    def _threads_allowed(self) -> int:
        """While the host is busy, one thread walks (and sleeps in the tick; the others
        pause); otherwise the scan's share of the CPUs."""
        return 1 if self.throttled else self._cpu_share.threads()

    def _on_walk_tick(self, counters: WalkCounters) -> None:
        if counters.entries != self.entries:
            self.moved_at = time.monotonic()
        self.entries = counters.entries
        self.files_processed = counters.file_count
        self.current_size = counters.total_size
        if self._cancelled:
            raise ScanCancelled
        self.throttled = self._is_busy()
        counters.threads_allowed = self._threads_allowed()
        if self.throttled:
            time.sleep(THROTTLE_SLEEP_SECONDS)  # yield the CPU to the host's own work

    def _on_du_poll(self, throttled: bool) -> None:
        if self._cancelled:
            raise ScanCancelled
        self.throttled = throttled
