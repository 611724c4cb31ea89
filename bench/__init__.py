"""Benchmarks against the peers (docs/PERFORMANCE.md); see bench/common.py."""
