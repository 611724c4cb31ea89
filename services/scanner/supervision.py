"""The pipe between the pool and each of its workers: liveness and retirement.

The worker beats on its own clock (the same clock as its bus heartbeats, whatever its
walk is doing). The pool takes a worker out of its slot, and starts a fresh one there,
when the worker says its walk is stuck (`ABANDONED`) or when it has been silent for the
liveness timeout (SIGSTOPped, or stuck as a whole); it then sends `RETIRE`, which a
stopped worker reads when it runs again: it finishes what it holds and exits.
"""

from __future__ import annotations

import logging
from multiprocessing.connection import Connection

log = logging.getLogger(__name__)

BEAT = b"beat"
ABANDONED = b"abandoned"
RETIRE = b"retire"


class PoolChannel:
    """The worker's end; a gone pool reads as `pool_gone` (the worker then stops)."""

    def __init__(self, connection: Connection | None) -> None:
        self._connection = connection
        self.pool_gone = False
        self.retired = False

    def _send(self, message: bytes) -> None:
        if self._connection is None or self.pool_gone:
            return
        try:
            self._connection.send_bytes(message)
        except OSError:
            self.pool_gone = True

    def beat(self) -> None:
        self._send(BEAT)

    def report_abandoned(self) -> None:
        self._send(ABANDONED)

    def read(self) -> None:
        """Take what the pool said (non-blocking)."""
        if self._connection is None or self.pool_gone:
            return
        try:
            while self._connection.poll(0):
                if self._connection.recv_bytes() == RETIRE:
                    self.retired = True
        except (OSError, EOFError):
            self.pool_gone = True
