"""The scanner process: a supervised pool of worker processes (`python -m services.scanner`).

Every slot holds one worker and a pipe to it (services/scanner/supervision.py). A worker
that dies is restarted; one that says its walk is stuck, or that has been silent for the
liveness timeout (SIGSTOPped, or stuck as a whole), is retired: it leaves its slot, a fresh
worker takes it, and the retired one finishes what it holds and exits by itself. A process
stuck in the kernel cannot be killed, so retired workers are not waited for, only counted;
past `scanner_workers` of them the oldest is sent SIGKILL.

With `VV_LIVE_SIZES=auto` the pool also runs the live-size tracker (live/process.py) in a
process of its own, restarted when it dies and killed (then restarted) when it falls
silent: it walks nothing that can hang, so a silent one is stopped or stuck as a whole.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import signal
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from types import FrameType

from common.bus import ensure_runtime_dir
from common.settings import Settings
from services.scanner.live.process import run_tracker
from services.scanner.supervision import ABANDONED, RETIRE
from services.scanner.worker import run_worker

log = logging.getLogger(__name__)

STOP_TIMEOUT_SECONDS = 5.0
SUPERVISE_POLL_SECONDS = 1.0  # a death or a worker's beat wakes it sooner
# A worker that dies this soon after its start waits this long before the next restart,
# so a worker that cannot start does not spin the CPU.
QUICK_DEATH_SECONDS = 2.0
# A spawned worker imports its modules before its first beat; silence counts after that.
STARTUP_GRACE_SECONDS = 30.0


@dataclass(slots=True)
class _Member:
    process: BaseProcess
    channel: Connection  # the pool's end of the worker's pipe
    started_at: float
    heard_at: float
    board_index: int | None  # its mark on the CPU share board (cpu_share.py)
    heard: bool = False  # it has beaten at least once
    killed: bool = False


class ScannerPool:
    """Spawns `settings.scanner_workers` workers, replaces the dead and the stuck, stops
    them all cleanly."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        # 'spawn': a worker must not inherit the parent's state (zmq contexts, threads).
        self._mp = multiprocessing.get_context("spawn")
        self._slots: list[_Member | None] = [None] * settings.scanner_workers
        self._restart_at: list[float] = [0.0] * settings.scanner_workers
        self._retired: list[_Member] = []
        self._stopping = False
        # One mark per worker that may be alive: the slots, and as many retired ones (past
        # that the oldest is killed); a spare pair for those killed but not yet reaped.
        self._board = self._mp.RawArray("b", 2 * settings.scanner_workers + 2)
        self._tracker: _Member | None = None
        self._tracker_restart_at = 0.0

    def install_signal_handlers(self) -> None:
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        log.info("stop requested signal=%s", signal.Signals(signum).name)
        self._stopping = True

    def request_stop(self) -> None:
        self._stopping = True

    def _free_board_index(self) -> int | None:
        members = [m for m in self._slots if m is not None] + self._retired
        taken = {m.board_index for m in members}
        free = next((i for i in range(len(self._board)) if i not in taken), None)
        if free is None:  # killed workers stuck in the kernel hold every mark
            log.warning("cpu share board full, a worker's scans go unmarked marks=%d", len(taken))
        return free

    def _clear_mark(self, member: _Member) -> None:
        """A reaped worker scans no more, whatever it last marked (killed mid-scan)."""
        if member.board_index is not None:
            self._board[member.board_index] = 0

    def _start(self, slot: int) -> None:
        ours, theirs = self._mp.Pipe(duplex=True)
        board_index = self._free_board_index()
        process = self._mp.Process(
            target=run_worker,
            args=(self.settings, os.getpid(), theirs, self._board, board_index),
            name=f"scanner-worker-{slot}",
        )
        process.start()
        theirs.close()
        now = time.monotonic()
        self._slots[slot] = _Member(process, ours, now, now, board_index)
        log.info("worker process started slot=%d pid=%s", slot, process.pid)

    def _read(self, member: _Member) -> bool:
        """Take the worker's beats; True when it says its walk is stuck."""
        abandoned = False
        try:
            while member.channel.poll(0):
                if member.channel.recv_bytes() == ABANDONED:
                    abandoned = True
                member.heard_at = time.monotonic()
                member.heard = True
        except (OSError, EOFError):
            pass  # it is exiting; its sentinel says so
        return abandoned

    def _retire(self, slot: int, member: _Member, reason: str) -> None:
        with contextlib.suppress(OSError):
            member.channel.send_bytes(RETIRE)  # read when it runs again, if ever
        self._slots[slot] = None
        self._retired.append(member)
        log.warning(
            "worker retired slot=%d pid=%s reason=%s retired=%d, starting a fresh one",
            slot,
            member.process.pid,
            reason,
            len(self._retired),
        )
        if len(self._retired) > self.settings.scanner_workers:
            oldest = next((m for m in self._retired if not m.killed), None)
            if oldest is not None:
                oldest.killed = True
                oldest.process.kill()  # it may still be stuck in the kernel: only counted
                log.warning("too many retired workers, killed pid=%s", oldest.process.pid)

    def _start_tracker(self) -> None:
        ours, theirs = self._mp.Pipe(duplex=True)
        process = self._mp.Process(
            target=run_tracker, args=(self.settings, os.getpid(), theirs), name="scanner-tracker"
        )
        process.start()
        theirs.close()
        now = time.monotonic()
        self._tracker = _Member(process, ours, now, now, None)
        log.info("tracker process started pid=%s", process.pid)

    def _supervise_tracker(self, now: float) -> None:
        if self.settings.live_sizes == "off":
            return
        member = self._tracker
        if member is not None:
            self._read(member)
            if member.process.is_alive():
                if now - member.heard_at <= self._allowed_silence(member):
                    return
                log.warning("tracker silent, killing pid=%s", member.process.pid)
                member.process.kill()
                member.process.join(STOP_TIMEOUT_SECONDS)
            else:
                member.process.join()
                log.warning(
                    "tracker process died pid=%s exitcode=%s, restarting",
                    member.process.pid,
                    member.process.exitcode,
                )
            member.channel.close()
            self._tracker = None
            lived = now - member.started_at
            self._tracker_restart_at = now + (
                QUICK_DEATH_SECONDS if lived < QUICK_DEATH_SECONDS else 0
            )
        if now >= self._tracker_restart_at:
            self._start_tracker()

    def _allowed_silence(self, member: _Member) -> float:
        liveness = self.settings.liveness_timeout_seconds
        return liveness if member.heard else max(liveness, STARTUP_GRACE_SECONDS)

    def _supervise(self) -> None:
        now = time.monotonic()
        for old in list(self._retired):
            self._read(old)  # keep its pipe drained, or its beats would block it
            if not old.process.is_alive():
                old.process.join()
                old.channel.close()
                self._clear_mark(old)
                self._retired.remove(old)
                log.info(
                    "retired worker exited pid=%s exitcode=%s retired=%d",
                    old.process.pid,
                    old.process.exitcode,
                    len(self._retired),
                )
        for slot, member in enumerate(self._slots):
            if member is not None and member.process.is_alive():
                if self._read(member):
                    self._retire(slot, member, "walk stuck")
                elif now - member.heard_at > self._allowed_silence(member):
                    self._retire(slot, member, "silent")
                else:
                    continue
            elif member is not None:
                member.process.join()
                member.channel.close()
                self._clear_mark(member)
                log.warning(
                    "worker process died slot=%d pid=%s exitcode=%s, restarting",
                    slot,
                    member.process.pid,
                    member.process.exitcode,
                )
                self._slots[slot] = None
                lived = now - member.started_at
                self._restart_at[slot] = now + (
                    QUICK_DEATH_SECONDS if lived < QUICK_DEATH_SECONDS else 0
                )
            if now >= self._restart_at[slot]:
                self._start(slot)
        self._supervise_tracker(now)

    def run(self) -> int:
        ensure_runtime_dir(self.settings)
        log.info(
            "scanner pool starting workers=%d endpoint=%s",
            self.settings.scanner_workers,
            self.settings.jobs_endpoint,
        )
        try:
            while not self._stopping:
                self._supervise()
                members = [m for m in self._slots if m is not None]
                if self._tracker is not None:
                    members.append(self._tracker)
                waitables: list[Connection | int] = [m.process.sentinel for m in members]
                waitables += [m.channel for m in members]
                waitables += [m.process.sentinel for m in self._retired]
                waitables += [m.channel for m in self._retired]
                wait(waitables, timeout=SUPERVISE_POLL_SECONDS)  # a death or a word wakes it
        finally:
            self._stop_all()
        return 0

    def _stop_all(self) -> None:
        members = [m for m in self._slots if m is not None] + self._retired
        if self._tracker is not None:
            members.append(self._tracker)
        alive = [m.process for m in members if m.process.is_alive()]
        for process in alive:
            process.terminate()  # SIGTERM: the worker finishes its tick and closes its socket
        deadline = time.monotonic() + STOP_TIMEOUT_SECONDS
        for process in alive:
            process.join(max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                log.warning("worker process did not stop, killing pid=%s", process.pid)
                process.kill()
                process.join(STOP_TIMEOUT_SECONDS)  # stuck in the kernel: leave it behind
        log.info("scanner pool stopped workers=%d", len(alive))
