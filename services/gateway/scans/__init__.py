"""Scan jobs: the coordinator, the broker that hands them to workers, the scheduler, the methods."""
