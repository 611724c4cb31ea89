"""scan: one volume of many entries, our native walk against `du` and the engine's df.

A seeded generator writes files (empty, small, sparse, a few larger), directories, hardlinks
and symlinks into one volume of the engine. Each round times, in a rotating order, on the
same mountpoint: `du -s -B1`, `du -sb`, gdu (Debian's parallel disk-usage tool, on every
core), the engine's `GET /system/df?type=volume`, our walk in this process (the C loop on
every usable CPU as a lone scan runs it, on one thread, keeping the directory tree as native
scans do, and the pure-Python fallback) with a progress callback like the worker's, and a
full scan through the services (sync refresh; the worker's own duration). Then the walk's
RSS with the tree and without it, each in a fresh process (bench/walk_rss.py).
Cold rounds (page cache dropped before each measurement) run when root may drop caches.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path

from bench import walk_rss
from bench.common import (
    API,
    CouldNotMeasure,
    Report,
    Row,
    engine,
    median,
    run,
    seconds,
    services,
)
from bench.scan_runs import (
    VOLUME,
    Timing,
    drop_caches,
    run_du,
    run_engine_df,
    run_gdu,
    run_walk,
)
from bench.scan_tree import make_tree
from services.scanner.cpu_share import usable_cpus
from services.scanner.tree import TreeOptions
from services.scanner.walk import IMPLEMENTATION


def measure(args: argparse.Namespace, report: Report) -> None:
    with engine(args.docker_host) as handle:
        handle.create_volumes([VOLUME])
        path = handle.mountpoint(VOLUME)
        started = time.perf_counter()
        made = make_tree(path, args.entries, args.seed)
        print(
            f"[scan] tree of {made.total()} entries ({dict(made)}) written in "
            f"{time.perf_counter() - started:.1f} s",
            flush=True,
        )
        with services(handle, volumes=1, VV_SCAN_CACHE_TTL=0) as stack, stack.http(120) as http:

            def service_scan() -> Timing:
                response = http.post(f"{API}/volumes/{VOLUME}/size/refresh", json={})
                if response.status_code != 200:
                    raise CouldNotMeasure(f"refresh answered {response.status_code}")
                result = response.json()["result"]
                # The worker's own walk time, progress and bus service included.
                return Timing(
                    result["duration"] / 1e9,
                    0.0,
                    0.0,
                    int(result["disk_usage"]),
                    int(result["total_size"]),
                )

            measurements: dict[str, Callable[[], Timing]] = {
                "du -s -B1": lambda: run_du(["-s", "-B1"], path),
                "du -sb": lambda: run_du(["-sb"], path),
                "engine df": lambda: run_engine_df(handle),
                "walk C threads": lambda: run_walk(path, "c", threads=usable_cpus()),
                "walk C": lambda: run_walk(path, "c"),
                "gdu": lambda: run_gdu(path),
                "walk C tree": lambda: run_walk(
                    path, "c", TreeOptions(0.001), threads=usable_cpus()
                ),
                "walk Python": lambda: run_walk(path, "python"),
                "service scan": service_scan,
            }
            if IMPLEMENTATION != "c":
                for name in ("walk C threads", "walk C", "walk C tree"):
                    del measurements[name]
            if shutil.which("gdu") is None:
                del measurements["gdu"]
                report.add(Row("warm: native walk vs gdu", "not measured", note="no gdu here"))
            for name in measurements:  # warm the page cache and every code path once
                measurements[name]()
            warm = rounds(measurements, args.rounds, cold=False)
            report_rounds(report, "warm", warm)
            contenders: tuple[str, ...] = ("du -s -B1", "walk C threads", "walk C", "gdu")
            cold_names = [name for name in contenders if name in measurements] or [
                "du -s -B1",
                "walk Python",
            ]
            if args.cold_rounds > 0 and drop_caches():
                cold_set = {name: measurements[name] for name in cold_names}
                report_rounds(report, "cold", rounds(cold_set, args.cold_rounds, cold=True))
            else:
                report.add(
                    Row(
                        "cold: native walk vs du -s -B1",
                        "not measured",
                        note="cannot drop the page cache here (needs root, writable /proc/sys)",
                    )
                )
        _agreement(report, warm)
        if IMPLEMENTATION == "c":
            _tree_memory(report, path, made["directories"], warm.get("gdu"))


def rounds(
    measurements: dict[str, Callable[[], Timing]], count: int, *, cold: bool
) -> dict[str, list[Timing]]:
    """`count` rounds, each measurement once per round. The walk and `du -s -B1` (the target's
    pair) run back to back, alternating which goes first; the others rotate after them."""
    names = list(measurements)
    taken: dict[str, list[Timing]] = {name: [] for name in names}
    lead = [name for name in ("walk C threads", "walk Python") if name in names][:1]
    pair = ["du -s -B1", *lead]
    rest = [name for name in names if name not in pair]
    for index in range(count):
        shift = index % len(rest) if rest else 0
        order = pair[:: -1 if index % 2 else 1] + rest[shift:] + rest[:shift]
        for name in order:
            if cold and not drop_caches():
                raise CouldNotMeasure("dropping the page cache stopped working")
            taken[name].append(measurements[name]())
        summary = ", ".join(f"{name} {seconds(taken[name][-1].wall)}" for name in names)
        print(f"[scan] {'cold' if cold else 'warm'} round {index + 1}: {summary}", flush=True)
    return taken


def report_rounds(report: Report, kind: str, taken: dict[str, list[Timing]]) -> None:
    du = taken["du -s -B1"]

    def ratio_to(ours: list[Timing], peer: list[Timing]) -> float:
        return median([a.wall / b.wall for a, b in zip(ours, peer, strict=True)])

    def wall(name: str) -> str:
        return seconds(median([t.wall for t in taken[name]]))

    walk = "walk C threads" if "walk C threads" in taken else "walk Python"
    label = (
        f"native walk (C, {usable_cpus()} threads)"
        if walk == "walk C threads"
        else "native walk (Python fallback)"
    )
    limits = {"warm": 0.6, "cold": 0.8}
    rows = [
        (walk, "du -s -B1", f"{kind}: {label}", f"<= {limits[kind]} x du -s -B1"),
        (walk, "gdu", f"{kind}: {label}", "<= 1.0 x gdu"),
        ("walk C", "du -s -B1", f"{kind}: native walk (C, 1 thread)", "-"),
    ]
    if kind == "warm":
        rows += [
            (walk, "du -sb", f"{kind}: {label}", "-"),
            (walk, "engine df", f"{kind}: {label}", "-"),
            ("service scan", "du -s -B1", f"{kind}: scan through the services", "-"),
            ("walk Python", "du -s -B1", f"{kind}: pure-Python walk (fallback)", "-"),
            (
                "walk C tree",
                "walk C threads",
                f"{kind}: C walk keeping the tree",
                "<= 1.15 x the walk without",
            ),
        ]
    for ours, peer, metric, target in rows:
        if ours not in taken or peer not in taken:
            continue
        ratio = ratio_to(taken[ours], taken[peer])
        if ours == "walk C tree":
            limit = 1.15
        elif peer == "du -s -B1":
            limit = limits[kind]
        else:
            limit = 1.0
        peer_label = "GET /system/df" if peer == "engine df" else peer
        report.add(
            Row(
                metric,
                wall(ours),
                f"{peer_label} {wall(peer)}",
                ratio,
                target,
                ratio <= limit if target != "-" else None,
                note=f"median of {len(taken[ours])} rounds"
                if ours != "service scan"
                else "worker's walk duration",
            )
        )
    ours_cpu = taken[walk]
    report.add(
        Row(
            f"{kind}: CPU seconds user+sys",
            f"{median([t.user for t in ours_cpu]):.3f}+{median([t.system for t in ours_cpu]):.3f}",
            f"du {median([t.user for t in du]):.3f}+{median([t.system for t in du]):.3f}",
            note="the kernel's share (sys) is the floor for both",
        )
    )


def _tree_memory(report: Report, path: Path, directories: int, gdu: list[Timing] | None) -> None:
    """The walk's RSS keeping the tree and without it, each in a fresh process, rounds
    interleaved (bench/walk_rss.py says why a fresh one); beside gdu's peak RSS."""
    taken: dict[bool, list[float]] = {False: [], True: []}
    threads = usable_cpus()
    for index in range(4):
        for keep in (index % 2 == 0, index % 2 == 1):
            taken[keep].append(walk_rss.measure(str(path), keep, threads)["rss_during"])
    with_tree, without = median(taken[True]), median(taken[False])
    report.add(
        Row(
            "walk process RSS keeping the tree",
            f"{with_tree / 2**20:.1f} MiB",
            f"without the tree {without / 2**20:.1f} MiB",
            with_tree / without,
            note=f"{(with_tree - without) / max(directories, 1):.0f} bytes per directory "
            f"({directories} directories); median of 2 fresh processes each",
        )
    )
    if gdu:
        gdu_rss = median([t.max_rss for t in gdu])
        report.add(
            Row(
                "walk process RSS keeping the tree, vs gdu's peak RSS",
                f"{with_tree / 2**20:.1f} MiB",
                f"gdu {gdu_rss / 2**20:.1f} MiB",
                with_tree / gdu_rss,
                note=f"{threads} threads each; ours includes the Python interpreter",
            )
        )


def _agreement(report: Report, taken: dict[str, list[Timing]]) -> None:
    """The figures are only worth comparing if ours equal the peers' to the byte."""
    walk = (taken.get("walk C threads") or taken["walk Python"])[-1]
    service = taken["service scan"][-1]
    du = taken["du -s -B1"][-1].value
    checks = (
        ("disk_usage equals du -s -B1", "du", du, "value"),
        ("total_size equals the engine's size", "engine", taken["engine df"][-1].value, "total"),
    )
    if "gdu" in taken:
        gdu = taken["gdu"][-1].value
        report.add(
            Row(
                "gdu's answer equals du -s -B1",
                "equal" if gdu == du else f"gdu {gdu}",
                f"du {du}",
                met=gdu == du,
                target="equal",
            )
        )
    for metric, peer, expected, field in checks:
        ours, via_service = getattr(walk, field), getattr(service, field)
        same = expected == ours == via_service
        report.add(
            Row(
                metric,
                "equal" if same else f"walk {ours}, service {via_service}",
                f"{peer} {expected}",
                met=same,
                target="equal",
            )
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.scan", description=__doc__)
    parser.add_argument("--entries", type=int, default=500_000, help="entries in the volume")
    parser.add_argument("--seed", type=int, default=1, help="seed of the tree generator")
    parser.add_argument("--rounds", type=int, default=7, help="warm rounds")
    parser.add_argument("--cold-rounds", type=int, default=3, help="cold rounds (0: none)")
    return run("scan", parser, measure, argv)


if __name__ == "__main__":
    sys.exit(main())
