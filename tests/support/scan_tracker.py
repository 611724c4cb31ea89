"""A WebSocket client that survives gateway restarts and counts terminal messages per scan.

It reconnects at once with `resume_after` = the newest `event_id` it has seen, as a dashboard
that wants every outcome would, and records every `scan_complete` / `scan_error` it receives.
"""

from __future__ import annotations

import json
import threading
import time
from collections import defaultdict
from typing import Any

from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus
from websockets.sync.client import connect

TERMINAL = ("scan_complete", "scan_error")
PING_EVERY_SECONDS = 10.0


class ScanTracker:
    def __init__(self, ws_url: str) -> None:
        self.ws_url = ws_url
        self.terminal: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self.last_event_id = 0
        self.connections = 0
        self.volume_names: set[str] | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._ping_wanted = threading.Event()
        self._pong = threading.Event()
        self._thread = threading.Thread(target=self._run, name="scan-tracker", daemon=True)

    def __enter__(self) -> ScanTracker:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def outcomes(self, scan_id: str) -> list[dict[str, Any]]:
        with self._lock:
            return list(self.terminal.get(scan_id, []))

    def barrier(self, timeout: float = 10.0) -> None:
        """Return once a ping sent now is answered: every message the gateway sent before
        it (replays after a reconnect included) has been recorded."""
        self._pong.clear()
        self._ping_wanted.set()
        if not self._pong.wait(timeout):
            raise AssertionError(f"no pong within {timeout:.0f} s")

    def counts(self, scan_ids: set[str]) -> tuple[list[str], list[str]]:
        """(lost, duplicated): ids with no terminal message, and with more than one."""
        with self._lock:
            lost = sorted(sid for sid in scan_ids if not self.terminal.get(sid))
            duplicated = sorted(sid for sid, got in self.terminal.items() if len(got) > 1)
        return lost, duplicated

    def _run(self) -> None:
        while not self._stop.is_set():
            url = f"{self.ws_url}?resume_after={self.last_event_id}"
            try:
                with connect(url, open_timeout=2, max_size=None) as conn:
                    self.connections += 1
                    last_ping = time.monotonic()
                    barrier_sent = False  # on this connection
                    while not self._stop.is_set():
                        if self._ping_wanted.is_set() and not barrier_sent:
                            conn.send(json.dumps({"type": "ping"}))
                            barrier_sent = True
                        if time.monotonic() - last_ping > PING_EVERY_SECONDS:
                            conn.send(json.dumps({"type": "ping"}))
                            last_ping = time.monotonic()
                        try:
                            raw = conn.recv(timeout=0.2)
                        except TimeoutError:
                            continue
                        self._record(json.loads(raw))
            except (OSError, ConnectionClosed, InvalidHandshake, InvalidStatus, TimeoutError):
                time.sleep(0.05)  # the gateway is restarting: come back at once

    def _record(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        if kind == "pong" and self._ping_wanted.is_set():
            self._ping_wanted.clear()
            self._pong.set()
        elif kind == "volume_update":
            self.volume_names = {volume["name"] for volume in message["data"]}
        elif kind in TERMINAL:
            data = message["data"]
            with self._lock:
                self.terminal[data["scan_id"]].append(message)
                self.last_event_id = max(self.last_event_id, int(data["event_id"]))
