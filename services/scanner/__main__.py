"""`python -m services.scanner`: the scanner pool."""

from __future__ import annotations

import sys

from common.bus import require_runtime_dir
from common.curve import JOBS_LINK, require_safe_bus
from common.logs import setup_logging
from common.settings import get_settings
from services.scanner.pool import ScannerPool


def main() -> int:
    settings = get_settings()
    setup_logging("scanner", settings.log_level)
    require_safe_bus(settings, connects=[(settings.jobs_endpoint, JOBS_LINK)])
    require_runtime_dir(settings)
    pool = ScannerPool(settings)
    pool.install_signal_handlers()
    return pool.run()


# The guard matters: 'spawn' re-imports this module in every worker as __mp_main__.
if __name__ == "__main__":
    sys.exit(main())
