"""The scanner process: a supervised pool of worker processes (`python -m services.scanner`)."""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import time
from multiprocessing.connection import wait
from multiprocessing.process import BaseProcess
from types import FrameType

from common.bus import ensure_runtime_dir
from common.settings import Settings
from services.scanner.worker import run_worker

log = logging.getLogger(__name__)

STOP_TIMEOUT_SECONDS = 5.0
SUPERVISE_POLL_SECONDS = 0.5
# A worker that dies this soon after its start waits this long before the next restart,
# so a worker that cannot start does not spin the CPU.
QUICK_DEATH_SECONDS = 2.0


class ScannerPool:
    """Spawns `settings.scanner_workers` workers, restarts the dead, stops them all cleanly."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        # 'spawn': a worker must not inherit the parent's state (zmq contexts, threads).
        self._mp = multiprocessing.get_context("spawn")
        self._slots: list[BaseProcess | None] = [None] * settings.scanner_workers
        self._started_at: list[float] = [0.0] * settings.scanner_workers
        self._restart_at: list[float] = [0.0] * settings.scanner_workers
        self._stopping = False

    def install_signal_handlers(self) -> None:
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        log.info("stop requested signal=%s", signal.Signals(signum).name)
        self._stopping = True

    def request_stop(self) -> None:
        self._stopping = True

    def _start(self, slot: int) -> None:
        process = self._mp.Process(
            target=run_worker,
            args=(self.settings, os.getpid()),
            name=f"scanner-worker-{slot}",
        )
        process.start()
        self._slots[slot] = process
        self._started_at[slot] = time.monotonic()
        log.info("worker process started slot=%d pid=%s", slot, process.pid)

    def _supervise(self) -> None:
        now = time.monotonic()
        for slot, process in enumerate(self._slots):
            if process is not None and process.is_alive():
                continue
            if process is not None:
                process.join()
                log.warning(
                    "worker process died slot=%d pid=%s exitcode=%s, restarting",
                    slot,
                    process.pid,
                    process.exitcode,
                )
                self._slots[slot] = None
                lived = now - self._started_at[slot]
                self._restart_at[slot] = now + (
                    QUICK_DEATH_SECONDS if lived < QUICK_DEATH_SECONDS else 0
                )
            if now >= self._restart_at[slot]:
                self._start(slot)

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
                sentinels = [p.sentinel for p in self._slots if p is not None]
                wait(sentinels, timeout=SUPERVISE_POLL_SECONDS)  # wakes as soon as one dies
        finally:
            self._stop_all()
        return 0

    def _stop_all(self) -> None:
        alive = [p for p in self._slots if p is not None and p.is_alive()]
        for process in alive:
            process.terminate()  # SIGTERM: the worker finishes its tick and closes its socket
        deadline = time.monotonic() + STOP_TIMEOUT_SECONDS
        for process in alive:
            process.join(max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                log.warning("worker process did not stop, killing pid=%s", process.pid)
                process.kill()
                process.join()
        log.info("scanner pool stopped workers=%d", len(alive))
