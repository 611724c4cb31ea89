"""One measurement: confine the job's mountpoint, then run its method on that descriptor."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass

from common.messages import ScanJob, ScanResultData, ScanTree, utc_now
from services.scanner.confine import allowed_roots, open_confined, real_path
from services.scanner.du_method import du_scan
from services.scanner.tree import TreeOptions, scan_tree
from services.scanner.walk import WalkCounters, walk_volume

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Measurement:
    result: ScanResultData
    tree: ScanTree | None  # native scans keep one; du does not


def measure(
    job: ScanJob,
    configured_roots: list[str],
    *,
    tree_options: TreeOptions,
    on_walk_tick: Callable[[WalkCounters], None],
    is_busy: Callable[[], bool],
    on_du_poll: Callable[[bool], None],
    walk_threads: int = 1,
    threads_allowed: int = 0,
) -> Measurement:
    """The job's result; raises ScanError for a refused or unscannable mountpoint.

    A native walk runs on up to `walk_threads` threads, `threads_allowed` of them at once
    until its first tick says otherwise (cpu_share.py)."""
    root_fd = open_confined(job.mountpoint, allowed_roots(configured_roots, job.volumes_dir))
    try:
        log.info("scan root opened scan_id=%s real_path=%r", job.scan_id, real_path(root_fd))
        if job.method == "native":
            walked = walk_volume(
                root_fd,
                on_walk_tick,
                tree=tree_options,
                threads=walk_threads,
                threads_allowed=threads_allowed,
            )
            tree = scan_tree(walked.tree, tree_options) if walked.tree is not None else None
            result = ScanResultData(
                volume_id=job.volume_id,
                total_size=walked.total_size,
                disk_usage=walked.disk_usage,
                file_count=walked.file_count,
                directory_count=walked.directory_count,
                largest_file=walked.largest_file,
                skipped=walked.skipped,
                scanned_at=utc_now(),
                method="native",
                duration=walked.duration_ns,
                filesystem_type=walked.filesystem_type,
                tree_available=tree is not None,
            )
            return Measurement(result, tree)
        measured = du_scan(root_fd, is_busy=is_busy, on_poll=on_du_poll)
        du_result = ScanResultData(
            volume_id=job.volume_id,
            total_size=measured.disk_usage,  # du knows only allocated bytes
            disk_usage=measured.disk_usage,
            file_count=0,
            directory_count=0,
            largest_file=0,
            skipped=measured.skipped,
            scanned_at=utc_now(),
            method="du",
            duration=measured.duration_ns,
            filesystem_type=measured.filesystem_type,
        )
        return Measurement(du_result, None)
    finally:
        os.close(root_fd)
