"""live: following changes (issue 13's tracker) against rescanning on a timer.

This module measures the tracker's CPU and memory in process. On a tmpfs of its own (so
only this script's changes are heard), `--volumes` volumes of `--files` files each, laid
out as an engine's `<volumes_dir>/<name>/_data`. A follower process runs the production
code, the scanner's `services.scanner.live.follow.Following`, in the loop the tracker
process runs (services/scanner/live/process.py, whose constants it imports): it reads every
volume in full, then waits on the fanotify descriptor; after a read that found events, the
next waits `EVENT_GATHER_SECONDS` (not looking at the descriptor meanwhile), and changed
figures are taken `live_flush_seconds` (the Settings default) after the first change. A
writer appends to random files at each of `--rates` changes a second for `--seconds`; the
follower's CPU over that window is the figure (what it does not do: encode the figures,
send them on the bus, heartbeat). Its peer, measured on the same volumes: what kubelet and
cAdvisor do, a full walk of every volume (our C walk) once a minute, its CPU averaged over
the minute. Rounds alternate the two. The follower's memory is its RSS after reading every
volume, minus before, per directory followed. At the end of each round every volume's live
figures must equal a fresh walk.

Then, unless `--latency-volumes 0`, the change -> `volume_update` latency through the real
services: bench/live_latency.py (see there).

Run as root from the repository root:
`python -m bench.live [--volumes 100] [--files 1000] [--rates 100 1000] [--seconds 10]
[--rounds 3] [--latency-volumes 10] [--docker-host URL]`
"""

from __future__ import annotations

import argparse
import multiprocessing
import random
import resource
import select
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path

from bench.common import CouldNotMeasure, Report, Row, median, run
from bench.live_latency import RESCAN_PERIOD_SECONDS, measure_latency, paced
from common.messages import LiveFollow, LiveTarget, utc_now
from common.settings import Settings
from services.scanner.live.changes import TrackerUnavailable, open_tracker
from services.scanner.live.figures import LiveFigures, walked_figures
from services.scanner.live.follow import Following
from services.scanner.live.process import EVENT_GATHER_SECONDS, IDLE_POLL_SECONDS
from services.scanner.walk import walk_volume

# How long the tracker gathers changed figures before sending them (VV_LIVE_FLUSH).
FLUSH_SECONDS = float(Settings.model_fields["live_flush_seconds"].default)


def make_volumes(volumes_dir: Path, volumes: int, files: int) -> list[Path]:
    made = []
    for index in range(volumes):
        data = volumes_dir / f"vol{index:03d}" / "_data"
        for number in range(files):
            directory = data / f"d{number % 10}"
            directory.mkdir(parents=True, exist_ok=True)
            (directory / f"f{number}").write_bytes(b"x" * (number % 4096))
        made.append(data)
    return made


def _rss() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize()


@dataclass(frozen=True, slots=True)
class FollowerRun:
    cpu_seconds: float  # while the writer wrote
    grown_bytes: int  # RSS after reading every volume minus before
    directories: int
    exact: bool  # every volume's figures equal a fresh walk at the end
    resyncs: int  # volumes read again because events were lost


def follower(volumes_dir: str, names: list[str], pipe: Connection) -> None:
    """The tracker's loop around `Following`, until told to stop; sends a FollowerRun (or
    an error string when it could not follow)."""
    following = Following(scan_roots=[volumes_dir], is_busy=lambda: False)
    made = utc_now()
    targets = tuple(
        LiveTarget(volume_id=name, mountpoint=f"{volumes_dir}/{name}/_data", created_at=made)
        for name in names
    )
    following.apply(LiveFollow(version=1, volumes_dir=volumes_dir, volumes=targets))
    before = _rss()  # the tracker is open; the volumes are read below, in steps
    tracker = following.tracker
    if tracker is None:
        pipe.send(f"not following: {following.mode}: {following.reason}")
        return
    while following.has_pending():
        following.read_step()
    grown = _rss() - before
    counts = following.counts()
    if counts["followed"] != len(names):
        pipe.send(f"followed {counts['followed']} of {len(names)} volumes")
        return
    following.take_events()  # what reading itself made, if anything
    following.take_sizes()
    pipe.send("ready")
    started_cpu: float | None = None
    flush_at: float | None = None
    next_take = 0.0  # events are read again from then on
    while True:
        # As LiveTracker.run: while gathering, the descriptor is not looked at; wake when
        # the gathering or the flush is due (at the latest after IDLE_POLL_SECONDS).
        now = time.monotonic()
        gathering = now < next_take
        deadlines = [now + IDLE_POLL_SECONDS]
        if gathering:
            deadlines.append(next_take)
        if flush_at is not None:
            deadlines.append(flush_at)
        watched = [pipe.fileno()] if gathering else [pipe.fileno(), tracker.fileno()]
        readable, _, _ = select.select(watched, [], [], max(0.0, min(deadlines) - now))
        if pipe.fileno() in readable:
            command = pipe.recv()
            if command == "start":
                started_cpu = time.process_time()
            elif command == "stop":
                break
        if time.monotonic() >= next_take and following.take_events():
            next_take = time.monotonic() + EVENT_GATHER_SECONDS
        if following.has_changes() and flush_at is None:
            flush_at = time.monotonic() + FLUSH_SECONDS
        if flush_at is not None and time.monotonic() >= flush_at:
            flush_at = None
            following.take_sizes()
    cpu = time.process_time() - (started_cpu or time.process_time())
    # The writer has returned, so every event it caused is queued: settle, then compare.
    following.take_events()
    following.resend_all()
    sizes, _, _ = following.take_sizes()
    exact = len(sizes) == len(names) and all(
        not size.stale
        and LiveFigures(size.total_size, size.disk_usage, size.file_count, size.directory_count)
        == walked_figures(f"{volumes_dir}/{size.volume_id}/_data")
        for size in sizes
    )
    run_ = FollowerRun(cpu, grown, counts["directories"], exact, following.resyncs_total)
    following.close()
    pipe.send(run_)


def writer(datas: list[str], files: int, rate: float, seconds: float) -> int:
    rng = random.Random(7)
    done = 0
    for _ in paced(rate, seconds):
        number = rng.randrange(files)
        with open(f"{rng.choice(datas)}/d{number % 10}/f{number}", "ab") as appended:
            appended.write(b"y")
        done += 1
    return done


def follow_cpu(
    volumes_dir: Path, names: list[str], datas: list[str], args: argparse.Namespace, rate: float
) -> tuple[float, FollowerRun]:
    """(CPU share of one core while writing at `rate`, the follower's run)."""
    spawn = multiprocessing.get_context("spawn")
    ours, theirs = spawn.Pipe()
    process = spawn.Process(target=follower, args=(str(volumes_dir), names, theirs))
    process.start()
    try:
        if not ours.poll(600):
            raise CouldNotMeasure("the follower never started")
        said = ours.recv()
        if said != "ready":
            raise CouldNotMeasure(f"the follower could not follow: {said}")
        ours.send("start")
        changes = writer(datas, args.files, rate, args.seconds)
        ours.send("stop")
        if not ours.poll(600):
            raise CouldNotMeasure("the follower never reported")
        result: FollowerRun = ours.recv()
    finally:
        process.join(30)
    if changes == 0:
        raise CouldNotMeasure("the writer made no change")
    return result.cpu_seconds / args.seconds, result


def rescan_cpu(datas: list[str]) -> float:
    """CPU seconds of one full walk of every volume, as a share of the rescan period."""
    before = time.process_time()  # every thread's (the walk may use several), in ns, not ticks
    for data in datas:
        walk_volume(data)
    return (time.process_time() - before) / RESCAN_PERIOD_SECONDS


def measure_cpu(args: argparse.Namespace, report: Report) -> None:
    with tempfile.TemporaryDirectory(prefix="vv-live-") as scratch:
        root = Path(scratch)
        mounted = subprocess.run(["mount", "-t", "tmpfs", "tmpfs", scratch], capture_output=True)
        if mounted.returncode != 0:
            raise CouldNotMeasure(f"cannot mount a tmpfs (needs root): {mounted.stderr!r}")
        try:
            volumes_dir = root / "volumes"
            made = make_volumes(volumes_dir, args.volumes, args.files)
            datas = [str(d) for d in made]
            names = [d.parent.name for d in made]
            try:
                open_tracker(str(volumes_dir)).close()
            except TrackerUnavailable as exc:
                raise CouldNotMeasure(f"no change tracker here: {exc}") from exc
            for rate in args.rates:
                cpu_rows(args, report, rate, volumes_dir, names, datas)
        finally:
            subprocess.run(["umount", scratch], check=True)


def cpu_rows(
    args: argparse.Namespace,
    report: Report,
    rate: float,
    volumes_dir: Path,
    names: list[str],
    datas: list[str],
) -> None:
    ours: list[float] = []
    peer: list[float] = []
    memory: list[float] = []
    exact = True
    resyncs = 0
    for _ in range(args.rounds):
        peer.append(rescan_cpu(datas))
        share, result = follow_cpu(volumes_dir, names, datas, args, rate)
        ours.append(share)
        memory.append(result.grown_bytes / max(result.directories, 1))
        exact = exact and result.exact
        resyncs += result.resyncs
    if not exact:
        raise CouldNotMeasure("the live figures differ from a fresh walk")
    target = rate <= 1000
    lost = f"; {resyncs} volumes read again after lost events" if resyncs else ""
    report.add(
        Row(
            f"tracker CPU (services.scanner.live.follow) at {rate:g} changes/s across "
            f"{args.volumes} volumes of {args.files} files (median of {args.rounds} rounds)",
            f"{median(ours) * 100:.2f} % of one core",
            f"a full walk every {RESCAN_PERIOD_SECONDS:g} s {median(peer) * 100:.3g} %",
            median(ours) / median(peer) if median(peer) else None,
            target="< 5 % of one core" if target else "-",
            met=median(ours) < 0.05 if target else None,
            note=f"live figures equal a fresh walk at the end{lost}; bus encoding not included",
        )
    )
    report.add(
        Row(
            f"follower memory per directory followed ({rate:g} changes/s runs)",
            f"{median(memory):.0f} B",
            note="RSS after reading every volume minus before, over directories",
        )
    )


def measure(args: argparse.Namespace, report: Report) -> None:
    measure_cpu(args, report)
    if args.latency_volumes > 0:
        measure_latency(args, report)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.live", description=__doc__)
    parser.add_argument("--volumes", type=int, default=100, help="volumes on the tmpfs")
    parser.add_argument("--files", type=int, default=1000, help="files per volume")
    parser.add_argument("--rates", type=float, nargs="+", default=[100, 1000])
    parser.add_argument("--seconds", type=float, default=10, help="of writing, per rate")
    parser.add_argument("--rounds", type=int, default=3, help="CPU rounds per rate")
    parser.add_argument(
        "--latency-volumes",
        type=int,
        default=10,
        help="volumes of the engine written to for the latency (0: no latency part)",
    )
    return run("live", parser, measure, argv)


if __name__ == "__main__":
    sys.exit(main())
