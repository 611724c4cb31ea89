"""live: following changes (issue 13's tracker) against rescanning on a timer.

On a tmpfs of its own (so only this script's changes are heard), `--volumes` volumes of
`--files` files each. A writer process appends to random files at `--rates` changes a
second for `--seconds`; a follower process (live/changes.py + live/volume.py, what the scanner
will run) reads the events every 100 ms and re-reads the directories they name. Its CPU
over the window is the figure; its peer, measured in the same run on the same volumes, is
what kubelet and cAdvisor do: a full walk of every volume (our C walk) once a minute,
whose CPU per minute is averaged over the minute. Rounds alternate the two. The follower's
memory is its RSS after reading every volume, minus before, per directory followed. At the
end every volume's live figures are checked against a fresh walk.

Run as root: `python -m bench.live [--rates 100 1000] [--seconds 10]`.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import random
import resource
import select
import subprocess
import sys
import tempfile
import time
from multiprocessing.connection import Connection
from pathlib import Path

from bench.common import CouldNotMeasure, Report, Row, median, run
from services.scanner.live.changes import TrackerUnavailable, open_tracker
from services.scanner.live.volume import LiveVolume, SharedInodes, walked_figures
from services.scanner.walk import walk_volume

RESCAN_PERIOD_SECONDS = 60.0  # kubelet's and cAdvisor's du interval
READ_EVERY_SECONDS = 0.1


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


def follower(volumes_dir: str, datas: list[str], pipe: Connection) -> None:
    """Follow until told to stop; report (CPU seconds while writing, bytes, directories,
    whether every volume equals a fresh walk at the end)."""
    tracker = open_tracker(volumes_dir)
    before = _rss()
    shared = SharedInodes()
    live = {
        Path(d).parent.name: LiveVolume(os.open(d, os.O_RDONLY | os.O_DIRECTORY), shared)
        for d in datas
    }
    grown = _rss() - before
    directories = sum(volume.directories() for volume in live.values())
    tracker.read()  # what building itself made, if anything
    pipe.send("ready")
    started_cpu = None
    while True:
        if pipe.poll():
            command = pipe.recv()
            if command == "start":
                started_cpu = time.process_time()
            elif command == "stop":
                break
        ready, _, _ = select.select([tracker.fileno()], [], [], READ_EVERY_SECONDS)
        if ready:
            time.sleep(READ_EVERY_SECONDS)  # let a batch gather, as the scanner will
            changes = tracker.read()
            for name, volume in live.items():
                if changes.overflowed:
                    volume.rebuild()
                elif name in changes.entries:
                    volume.refresh(changes.entries[name])
    cpu = time.process_time() - (started_cpu or time.process_time())
    changes = tracker.read()  # settle what is still queued
    for name, volume in live.items():
        if changes.overflowed:
            volume.rebuild()
        else:
            volume.refresh(changes.entries.get(name, {}))
    exact = all(live[Path(d).parent.name].figures() == walked_figures(d) for d in datas)
    pipe.send((cpu, grown, directories, exact))


def writer(datas: list[str], files: int, rate: float, seconds: float) -> int:
    rng = random.Random(7)
    interval = 1 / rate
    started = time.monotonic()
    done = 0
    while time.monotonic() - started < seconds:
        due = started + done * interval
        pause = due - time.monotonic()
        if pause > 0:
            time.sleep(pause)
        number = rng.randrange(files)
        path = f"{rng.choice(datas)}/d{number % 10}/f{number}"
        with open(path, "ab") as appended:
            appended.write(b"y")
        done += 1
    return done


def follow_cpu(
    volumes_dir: Path, datas: list[str], args: argparse.Namespace, rate: float
) -> tuple[float, int, int, bool]:
    spawn = multiprocessing.get_context("spawn")
    ours, theirs = spawn.Pipe()
    process = spawn.Process(target=follower, args=(str(volumes_dir), datas, theirs))
    process.start()
    if not ours.poll(600) or ours.recv() != "ready":
        raise CouldNotMeasure("the follower never started")
    ours.send("start")
    changes = writer(datas, args.files, rate, args.seconds)
    ours.send("stop")
    if not ours.poll(600):
        raise CouldNotMeasure("the follower never reported")
    cpu, grown, directories, exact = ours.recv()
    process.join(30)
    return cpu / args.seconds, grown, directories, exact and changes > 0


def rescan_cpu(datas: list[str]) -> float:
    """CPU seconds of one full walk of every volume, as a share of the rescan period."""
    before = os.times()
    for data in datas:
        walk_volume(data)
    after = os.times()
    used = (after.user - before.user) + (after.system - before.system)
    return used / RESCAN_PERIOD_SECONDS


def measure(args: argparse.Namespace, report: Report) -> None:
    with tempfile.TemporaryDirectory(prefix="vv-live-") as scratch:
        root = Path(scratch)
        mounted = subprocess.run(["mount", "-t", "tmpfs", "tmpfs", scratch], capture_output=True)
        if mounted.returncode != 0:
            raise CouldNotMeasure(f"cannot mount a tmpfs (needs root): {mounted.stderr!r}")
        try:
            volumes_dir = root / "volumes"
            datas = [str(d) for d in make_volumes(volumes_dir, args.volumes, args.files)]
            try:
                open_tracker(str(volumes_dir)).close()
            except TrackerUnavailable as exc:
                raise CouldNotMeasure(f"no change tracker here: {exc}") from exc
            for rate in args.rates:
                ours, peer, memory = [], [], []
                exact = True
                for _ in range(args.rounds):
                    peer.append(rescan_cpu(datas))
                    share, grown, directories, same = follow_cpu(volumes_dir, datas, args, rate)
                    ours.append(share)
                    memory.append(grown / max(directories, 1))
                    exact = exact and same
                if not exact:
                    raise CouldNotMeasure("the live figures differ from a fresh walk")
                target = rate <= 1000
                report.add(
                    Row(
                        f"tracker CPU at {rate:g} changes/s across {args.volumes} volumes "
                        f"of {args.files} files (median of {args.rounds} rounds)",
                        f"{median(ours) * 100:.2f} % of one core",
                        f"a full walk every {RESCAN_PERIOD_SECONDS:g} s {median(peer) * 100:.2f} %",
                        median(ours) / median(peer) if median(peer) else None,
                        target="< 5 % of one core" if target else "-",
                        met=median(ours) < 0.05 if target else None,
                        note="live figures equal a fresh walk at the end"
                        if exact
                        else "live figures DIFFER from a fresh walk",
                    )
                )
                report.add(
                    Row(
                        f"follower memory per directory followed ({rate:g} changes/s runs)",
                        f"{median(memory):.0f} B",
                        note="RSS after reading every volume minus before, over directories",
                    )
                )
        finally:
            subprocess.run(["umount", scratch], check=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.live", description=__doc__)
    parser.add_argument("--volumes", type=int, default=100)
    parser.add_argument("--files", type=int, default=1000, help="files per volume")
    parser.add_argument("--rates", type=float, nargs="+", default=[100, 1000])
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    return run("live", parser, measure, argv)


if __name__ == "__main__":
    sys.exit(main())
