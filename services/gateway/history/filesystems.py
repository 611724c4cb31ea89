"""Free space of the filesystem under a volume, as the gateway sees it (for the forecast).

`statvfs` on a filesystem that stopped answering blocks in the kernel for good, and such a
thread can never be taken back. So probes run on a small pool of their own (never the
event loop's default one, which other work needs), one probe per path at a time: a request
for a path whose probe still hangs shares it (and its timeout) instead of taking another
thread, and once it has timed out, answers at once that the filesystem is not answering.
"""

from __future__ import annotations

import asyncio
import os
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

PROBE_THREADS = 4
PROBE_TIMEOUT_SECONDS = 5.0


@dataclass(frozen=True, slots=True)
class FilesystemSpace:
    path: str
    free_bytes: int | None
    total_bytes: int | None
    error: str | None  # why the figures are null


class FilesystemProbe:
    def __init__(self, timeout_seconds: float = PROBE_TIMEOUT_SECONDS) -> None:
        self.timeout_seconds = timeout_seconds
        self._pool = ThreadPoolExecutor(PROBE_THREADS, thread_name_prefix="statvfs")
        self._pending: dict[str, tuple[Future[os.statvfs_result], float]] = {}

    async def space(self, path: str) -> FilesystemSpace:
        pending = self._pending.get(path)
        if pending is not None and pending[0].done():
            del self._pending[path]
            pending = None
        if pending is None:
            pending = (self._pool.submit(os.statvfs, path), time.monotonic())
            self._pending[path] = pending
        future, started = pending
        waited = time.monotonic() - started
        if waited >= self.timeout_seconds:
            return self._failed(path, f"statvfs has not answered for {waited:.0f} s")
        try:
            stat = await asyncio.wait_for(
                asyncio.shield(asyncio.wrap_future(future)), self.timeout_seconds - waited
            )
        except TimeoutError:
            return self._failed(path, f"statvfs did not answer within {self.timeout_seconds:.0f} s")
        except OSError as failure:
            reason = failure.strerror or failure
            return self._failed(path, f"cannot stat the mountpoint from the gateway: {reason}")
        finally:
            if future.done():
                self._pending.pop(path, None)
        return FilesystemSpace(
            path, stat.f_bavail * stat.f_frsize, stat.f_blocks * stat.f_frsize, None
        )

    @staticmethod
    def _failed(path: str, error: str) -> FilesystemSpace:
        return FilesystemSpace(path, None, None, error)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)  # a hung probe is left behind
