"""Names the pool gives its processes, so `ps`, an operator and the tests can tell them apart.

Spawned children all start as `python -c "from multiprocessing.spawn import spawn_main..."`;
each names itself (/proc/PID/comm, at most 15 bytes) as the first thing its target does.
"""

from __future__ import annotations

import ctypes

WORKER_PROCESS_NAME = "vv-worker"
TRACKER_PROCESS_NAME = "vv-tracker"
_PR_SET_NAME = 15  # <linux/prctl.h>


def name_process(name: str) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_NAME, name.encode()[:15], 0, 0, 0)
