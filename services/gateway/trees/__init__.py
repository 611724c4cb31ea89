"""Inside a volume: the stored directory trees of native scans, browsed and compared."""
