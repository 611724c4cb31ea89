"""scheduler: what a scheduler tick costs the gateway when nothing is due (issue 14, idle is
idle). In process: the real scheduler over a catalog of `--volumes` volumes, all scanned
(tests/support/scheduling.py); each round times one tick after a change of what due times
depend on (the peer: a pass over every volume, what every tick cost before quiet ticks) and
one tick with nothing changed (ours), interleaved. CPU time of this process, per tick.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time

from bench.common import Report, Row, median, run
from tests.support.scheduling import scanned_scheduler

SCANNED_AT = 1_700_000_000.0


def measure(args: argparse.Namespace, report: Report) -> None:
    scheduler, catalog, coordinator = scanned_scheduler(args.volumes, SCANNED_AT)
    loop = asyncio.new_event_loop()
    now = SCANNED_AT + 1  # nothing is due for half an interval
    passes: list[float] = []
    quiet: list[float] = []

    def tick() -> float:
        started = time.process_time_ns()
        loop.run_until_complete(scheduler.run_once(now))
        return (time.process_time_ns() - started) / 1e6

    for _ in range(args.rounds):
        catalog.schedule_version += 1  # as a new volume or a result would
        passes.append(tick())
        quiet.append(tick())
    loop.close()
    assert not coordinator.asked, "a volume was due: the figures are not of idle ticks"
    ours, peer = median(quiet), median(passes)
    where = f"{args.volumes:,} volumes, nothing due"
    report.add(
        Row(
            f"scheduler tick, {where}: CPU (median of {args.rounds} rounds, interleaved)",
            f"{ours:.3f} ms",
            f"a pass over every volume {peer:.3f} ms",
            ours / peer,
        )
    )
    tick_seconds = scheduler.tick_seconds
    report.add(
        Row(
            f"the scheduler's share of one core at one tick every {tick_seconds:g} s, {where}",
            f"{ours / tick_seconds / 10:.4f} %",
            f"a pass every tick {peer / tick_seconds / 10:.3f} %",
            ours / peer,
        )
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.scheduler", description=__doc__)
    parser.add_argument("--volumes", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=20)
    return run("scheduler", parser, measure, argv)


if __name__ == "__main__":
    sys.exit(main())
