"""`python -m bench.walk_rss ROOT tree|plain [THREADS]`: the C walk of ROOT (on THREADS
threads, default 1) in this fresh process, as a worker runs it, printing as JSON the
process's RSS at its largest while walking (sampled at every tick, when every record the
walk keeps is alive) and the walk's wall time.

A fresh process, because in a long-lived one the memory an earlier walk freed is reused and
hides what this one needs; its peak over the whole run says nothing either (start-up and
imports reach higher than a walk of 100,000 directories). bench/scan.py and
tests/test_tree_walk.py both run it.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time

from services.scanner.tree import TreeOptions
from services.scanner.walk import WalkCounters, walk_volume


def rss() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize()


def measure_here(root: str, keep_tree: bool, threads: int = 1) -> dict[str, float]:
    largest = [rss()]  # a walk too small to tick reads as what the process had before it

    def tick(_counters: WalkCounters) -> None:
        largest[0] = max(largest[0], rss())

    started = time.perf_counter()
    tree = TreeOptions(0.001) if keep_tree else None
    walk_volume(root, tick, implementation="c", tree=tree, threads=threads)
    return {"rss_during": largest[0], "seconds": time.perf_counter() - started}


def measure(root: str, keep_tree: bool, threads: int = 1) -> dict[str, float]:
    """The same, in a fresh process."""
    mode = "tree" if keep_tree else "plain"
    out = subprocess.run(
        [sys.executable, "-m", "bench.walk_rss", root, mode, str(threads)],
        check=True,
        capture_output=True,
        text=True,
    )
    figures: dict[str, float] = json.loads(out.stdout)
    return figures


if __name__ == "__main__":
    threads = int(sys.argv[3]) if len(sys.argv) > 3 else 1
    print(json.dumps(measure_here(sys.argv[1], sys.argv[2] == "tree", threads)))
