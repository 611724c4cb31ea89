"""scheduler: what a scheduler tick costs the gateway (issue 14, idle is idle; issue 16,
one gateway of 100,000 volumes). In process: the real scheduler over a catalog of
`--volumes` volumes, all scanned (tests/support/scheduling.py); each round times a tick
that works out every volume's due time (the peer: what every tick did before the due
index, services/gateway/scans/due_index.py) and a tick after one volume's new result
(ours), interleaved. CPU time of this process, per tick.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time

from bench.common import Report, Row, median, run
from tests.support.scheduling import scan_result, scanned_scheduler

SCANNED_AT = 1_700_000_000.0


def measure(args: argparse.Namespace, report: Report) -> None:
    scheduler, catalog, coordinator = scanned_scheduler(args.volumes, SCANNED_AT)
    loop = asyncio.new_event_loop()
    now = SCANNED_AT + 1  # nothing is due for half an interval
    every: list[float] = []
    one: list[float] = []

    def tick() -> float:
        started = time.process_time_ns()
        loop.run_until_complete(scheduler.run_once(now))
        return (time.process_time_ns() - started) / 1e6

    tick()  # the first works out every volume's due time
    for index in range(args.rounds):
        scheduler.recompute_all()  # the peer: what every tick did before the due index
        every.append(tick())
        # Ours: a tick after one volume's scan result, the common case on a busy gateway.
        catalog.set_result(scan_result(f"v{index % args.volumes}", SCANNED_AT + 0.5))
        one.append(tick())
    loop.close()
    assert not coordinator.asked, "a volume was due: the figures are not of idle ticks"
    ours, peer = median(one), median(every)
    where = f"{args.volumes:,} volumes, one result since the last tick, nothing due"
    report.add(
        Row(
            f"scheduler tick, {where}: CPU (median of {args.rounds} rounds, interleaved)",
            f"{ours:.3f} ms",
            f"every volume's due time worked out {peer:.3f} ms",
            ours / peer,
        )
    )
    tick_seconds = scheduler.tick_seconds
    report.add(
        Row(
            f"the scheduler's share of one core at one tick every {tick_seconds:g} s, {where}",
            f"{ours / tick_seconds / 10:.4f} %",
            f"every due time each tick {peer / tick_seconds / 10:.3f} %",
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
