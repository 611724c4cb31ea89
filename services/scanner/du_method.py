"""The `du` method: the disk usage `du -s -x -B1` reports, measured by du itself.

du knows only allocated bytes, so a du result has `total_size` mirroring `disk_usage`,
and `file_count`, `directory_count` and `largest_file` are 0. `skipped` counts du's
"cannot read/access" complaints. While the host is busy the du process is paused with
SIGSTOP and resumed with SIGCONT: that is how a du scan is throttled.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass

from services.scanner.errors import ScanError, check_root
from services.scanner.mounts import filesystem_type

log = logging.getLogger(__name__)

DU = "du"
_COMPLAINT = re.compile(r"^(?:\S*/)?du: (?:cannot|can't) ")
POLL_SECONDS = 0.05


@dataclass(frozen=True, slots=True)
class DuOutcome:
    disk_usage: int
    skipped: int
    filesystem_type: str
    duration_ns: int


def available() -> bool:
    """Whether `du` is on PATH, so the method can be offered."""
    return shutil.which(DU) is not None


def _failure(root: str, stderr: str, returncode: int) -> ScanError:
    text = stderr.strip().splitlines()
    detail = text[-1] if text else f"du exited with {returncode}"
    if "Permission denied" in stderr:
        return ScanError("SCAN_PERMISSION_ERROR", detail)
    if "No such file" in stderr or "Not a directory" in stderr:
        return ScanError("SCAN_PATH_ERROR", detail)
    return ScanError("SCAN_FAILED", f"du failed on {root!r}: {detail}")


def du_scan(
    root: str | int,
    *,
    is_busy: Callable[[], bool] = lambda: False,
    on_poll: Callable[[bool], None] | None = None,
    poll_seconds: float = POLL_SECONDS,
) -> DuOutcome:
    """Run du on `root`, pausing it while `is_busy()`; `on_poll(throttled)` runs each poll.

    An int root is an open directory descriptor (see confine.py): du inherits it and
    measures `/proc/self/fd/N` with -D (dereference that one argument), never the path.

    An exception raised by `on_poll` kills du and propagates (that is how to cancel).
    """
    started = time.monotonic_ns()
    inherited: tuple[int, ...] = ()
    if isinstance(root, int):
        target, extra, inherited = f"/proc/self/fd/{root}", ["-D"], (root,)
    else:
        check_root(root)  # the same root rules and error codes as the native walk
        target, extra = root, []
    fs_type = filesystem_type(target)
    executable = shutil.which(DU)
    if executable is None:
        raise ScanError("SCAN_FAILED", "du is not installed on this host")
    # `--` so a root starting with "-" is never an option; C locale for stable messages.
    process = subprocess.Popen(
        [executable, "-s", "-x", "-B1", *extra, "--", target],
        pass_fds=inherited,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "LC_ALL": "C"},
    )
    stopped = False
    try:
        # communicate() in short slices keeps draining both pipes (so du never blocks on a
        # long list of complaints) and gives a regular point to throttle and report.
        while True:
            try:
                stdout, stderr = process.communicate(timeout=poll_seconds)
                break
            except subprocess.TimeoutExpired:
                pass
            if is_busy() != stopped:
                stopped = not stopped
                process.send_signal(signal.SIGSTOP if stopped else signal.SIGCONT)
                log.debug("du %s pid=%d", "paused" if stopped else "resumed", process.pid)
            if on_poll is not None:
                on_poll(stopped)
    finally:
        if process.returncode is None:
            process.kill()  # also ends a stopped du: SIGKILL needs no SIGCONT
            process.wait()
    out = stdout.decode(errors="replace")
    err = stderr.decode(errors="replace")
    first = out.split("\t", 1)[0].strip()
    if not first.isdigit():
        raise _failure(target, err, process.returncode)
    # du exits 1 but still prints the total when some entries could not be read; it names
    # itself as it was run (`/usr/bin/du: cannot ...`; busybox and uutils say `du: can't`).
    skipped = sum(1 for line in err.splitlines() if _COMPLAINT.match(line))
    return DuOutcome(
        disk_usage=int(first),
        skipped=skipped,
        filesystem_type=fs_type,
        duration_ns=time.monotonic_ns() - started,
    )
