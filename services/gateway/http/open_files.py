"""The gateway's open-file limit: every connection is a descriptor.

systemd's default soft limit (1,024) let 1,500 slow clients starve everyone else: accept()
failed with EMFILE while they held their descriptors. The kernel lets a process raise its
soft limit up to the hard one (systemd's default: 524,288; our units set 65,536 for both),
so the gateway does that at start. Slow clients themselves are cut by Hypercorn's idle
timer, which runs until a request's headers are complete (`keep_alive_timeout`, 5 s), so a
client that dribbles its headers holds its descriptor for seconds, not for good.
"""

from __future__ import annotations

import logging
import resource

log = logging.getLogger("gateway")


def raise_open_file_limit() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit; the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
    if wanted > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
        except (ValueError, OSError) as error:
            log.warning("open-file limit stays soft=%d hard=%d error=%s", soft, hard, error)
            return soft
        log.info("open-file limit raised soft=%d to=%d", soft, wanted)
        return wanted
    return soft
