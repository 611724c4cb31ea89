"""Run every benchmark (`make bench`), one process each, and print all their rows together.

`--sizes default` uses the sizes of docs/PERFORMANCE.md (about ten minutes on the 2-core
machine); `--sizes smoke` tiny ones (what tests/test_bench_smoke.py runs, to keep the
scripts from rotting). `--markdown FILE` also writes the combined table there.
Exits non-zero when any script could not measure.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import TABLE_HEADER, Row, machine, markdown_rows

REPO_ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ("scan", "fleet", "events", "ws", "api", "throttle", "idle", "live", "hosts", "scheduler")
SIZES: dict[str, dict[str, str]] = {
    "default": {name: "" for name in SCRIPTS},
    "smoke": {
        "scan": "--entries 300 --rounds 1 --cold-rounds 0",
        "fleet": "--volumes 3 --files 50 --rounds 1",
        "events": "--creations 3 --volumes 5",
        "ws": "--clients 4 --seconds 1 --client-procs 1",
        "api": "--volumes 10 --connections 2 --requests 20 --engine-requests 10 --rounds 1",
        "throttle": "--entries 2000 --queued 1 --hog-seconds 1.5",
        "idle": "--volumes 10 --clients 2 --rounds 1 --window 1",
        "live": "--volumes 3 --files 50 --rates 50 --seconds 1 --rounds 1 --latency-volumes 2",
        "hosts": "--hosts 3 --volumes 10 --changes 2 --rounds 1 --processes 1",
        "scheduler": "--volumes 50 --rounds 2",
    },
}


def command(name: str, sizes: str, extra: list[str]) -> list[str]:
    return [sys.executable, "-m", f"bench.{name}", *SIZES[sizes][name].split(), *extra]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run_all", description=__doc__)
    parser.add_argument("--sizes", choices=sorted(SIZES), default="default")
    parser.add_argument("--only", nargs="*", choices=SCRIPTS, help="run just these")
    parser.add_argument("--docker-host", help="passed on to every script")
    parser.add_argument("--markdown", type=Path, help="write the combined table here")
    args = parser.parse_args(argv)
    extra = ["--docker-host", args.docker_host] if args.docker_host else []
    tables: list[str] = []
    failed: list[str] = []
    with tempfile.TemporaryDirectory(prefix="vvbench-") as tmp:
        for name in args.only or SCRIPTS:
            out = Path(tmp) / f"{name}.json"
            argv_ = command(name, args.sizes, [*extra, "--json", str(out)])
            print(f"=== {' '.join(argv_[1:])}", flush=True)
            started = time.monotonic()
            code = subprocess.run(argv_, cwd=REPO_ROOT, check=False).returncode
            print(f"=== {name}: exit {code} after {time.monotonic() - started:.0f} s", flush=True)
            if code != 0 or not out.exists():
                failed.append(name)
                continue
            table = json.loads(out.read_text())
            tables.extend(markdown_rows(name, [Row(**row) for row in table["rows"]]))
    combined = "\n".join([*TABLE_HEADER, *tables])
    print(f"\nmachine: {machine()}\n{combined}")
    if args.markdown is not None:
        args.markdown.write_text(f"machine: {machine()}\n\n{combined}\n")
    if failed:
        print(f"could not measure: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
