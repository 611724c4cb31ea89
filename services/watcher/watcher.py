"""The watcher process: follows the engine's event stream, polls it, serves the state.

Every engine event wakes a poll (the volumes and the containers that use them). While the
event stream is followed, polling on the clock is a slow safety net
(`VV_POLL_SAFETY_INTERVAL`); while it is down, the engine is polled every
`VV_POLL_INTERVAL`. An idle host costs next to nothing.

Clone-pattern server (outlets.py: served on the host, or sent out to a gateway of many
hosts as its agent): every change of the volume set (or of the engine's reachability) gets
the next `seq` and is published as a delta (the volumes added or changed, the names
removed); snapshot requests are answered with the whole current state; a heartbeat carries
`epoch` and `seq` so subscribers notice gaps and restarts. A fresh `epoch` per process start
tells subscribers the sequence began again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
import uuid
from typing import Any

import docker
import zmq
import zmq.asyncio

from common import bus
from common.messages import (
    EngineStatus,
    Heartbeat,
    SnapshotRequest,
    StateDelta,
    StateSnapshot,
    VolumeRecord,
    decode,
    encode,
)
from common.settings import Settings
from common.tasks import start_essential
from services.watcher.docker_state import (
    engine_identity,
    make_api_client,
    read_new_volume,
    read_volume_records,
)
from services.watcher.outlets import HEARTBEAT_TOPIC, STATE_TOPIC, StateOutlet, open_outlet

log = logging.getLogger("watcher")

# While the engine is down it is asked again this often, and the event stream reconnects as
# often: a failed connect costs next to nothing, and a long back-off is what made the list
# converge 16 s after the engine came back. An answer (or the stream's return) wakes the poll.
RECONNECT_SECONDS = 1.0


class Watcher:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.epoch = uuid.uuid4().hex
        self.seq = 0
        self.volumes: dict[str, VolumeRecord] = {}
        self.engine = EngineStatus(reachable=False, error="not polled yet")
        self._volumes_dir: str | None = None
        # The host it speaks for as an agent: VV_HOST_ID, else the engine's own name.
        self.host_id: str | None = settings.host_id
        # Set by the event thread while it follows the engine's stream: every change then
        # wakes the poll, and polling on a clock is only the safety net.
        self._stream_healthy = False
        # Volume creations and removals seen on the stream since the last read: when they
        # are all there is to read, only those volumes are asked for (GET /volumes/NAME),
        # not the whole list (a full poll of 5,000 volumes takes the engine ~100 ms).
        self._volume_events: list[tuple[str, str]] = []
        self._other_events = True  # anything but those: read everything next time
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._context = zmq.asyncio.Context()
        self._outlet: StateOutlet | None = None

    # --- lifecycle ------------------------------------------------------------------

    async def startup(self) -> None:
        bus.ensure_runtime_dir(self.settings)
        self._outlet = open_outlet(self.settings, self._context)
        log.info("started epoch=%s %s", self.epoch, self._outlet.describe())

    async def run(self) -> None:
        await self.startup()
        loop = asyncio.get_running_loop()
        events = threading.Thread(
            target=self._follow_events, args=(loop,), name="docker-events", daemon=True
        )
        events.start()
        tasks = [
            start_essential(self._poll_loop(), "poll"),
            start_essential(self._serve_snapshots(), "snapshots"),
            start_essential(self._heartbeat_loop(), "heartbeat"),
        ]
        await self._stopping.wait()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.shutdown()

    def stop(self) -> None:
        self._stopping.set()

    async def shutdown(self) -> None:
        if self._outlet is not None:
            self._outlet.close()
        bus.term(self._context)
        log.info("stopped epoch=%s seq=%d", self.epoch, self.seq)

    # --- state ----------------------------------------------------------------------

    def snapshot(self) -> StateSnapshot:
        return StateSnapshot(
            epoch=self.epoch,
            seq=self.seq,
            engine=self.engine,
            volumes=tuple(self.volumes.values()),
        )

    async def _publish_if_changed(
        self, volumes: tuple[VolumeRecord, ...] | None, engine: EngineStatus
    ) -> None:
        """Publish what changed; `volumes` None keeps the last known set (engine down)."""
        incoming = self.volumes if volumes is None else {v.name: v for v in volumes}
        upserts = tuple(
            record for name, record in incoming.items() if self.volumes.get(name) != record
        )
        removed = tuple(name for name in self.volumes if name not in incoming)
        if not upserts and not removed and engine == self.engine and self.seq > 0:
            return
        self.volumes, self.engine = incoming, engine
        self.seq += 1
        delta = StateDelta(
            epoch=self.epoch, seq=self.seq, engine=engine, upserts=upserts, removed=removed
        )
        assert self._outlet is not None
        await self._outlet.publish(STATE_TOPIC, encode(delta))
        log.info(
            "published state seq=%d volumes=%d changed=%d removed=%d engine_reachable=%s",
            self.seq,
            len(incoming),
            len(upserts),
            len(removed),
            engine.reachable,
        )

    def _read_everything(self) -> None:
        self._other_events = True
        self._wake.set()

    def _note_event(self, event: dict[str, Any]) -> None:
        """On the loop: remember what the event says, and wake the poll."""
        action = str(event.get("Action", ""))
        name = str((event.get("Actor") or {}).get("ID", ""))
        if event.get("Type") == "volume" and action in ("create", "destroy") and name:
            self._volume_events.append((action, name))
        else:
            self._other_events = True
        self._wake.set()

    def _take_events(self) -> list[tuple[str, str]] | None:
        """The volume events to apply alone (maybe none: a wake whose events an earlier
        read already took), or None when everything must be read."""
        events, self._volume_events = self._volume_events, []
        whole, self._other_events = self._other_events, False
        return None if whole or self.seq == 0 else events

    async def _read(self, api: docker.APIClient) -> tuple[VolumeRecord, ...]:
        events = self._take_events()
        if events is None:
            return await asyncio.to_thread(read_volume_records, api)
        volumes = dict(self.volumes)
        for action, name in events:
            if action == "destroy":
                volumes.pop(name, None)
                continue
            record = await asyncio.to_thread(read_new_volume, api, name)
            if record is not None:
                volumes[name] = record
        return tuple(volumes.values())

    async def _poll_loop(self) -> None:
        api: docker.APIClient | None = None
        while True:
            self._wake.clear()
            try:
                if api is None:  # creating one asks the engine its API version
                    api = await asyncio.to_thread(make_api_client, self.settings)
                    # Read again on every (re)connection: a restarted engine may have
                    # another data root, and scans are confined to its volumes directory.
                    self._volumes_dir, engine_name = await asyncio.to_thread(engine_identity, api)
                    if self.settings.host_id is None and engine_name is not None:
                        self.host_id = engine_name
                    self._other_events = True  # after a gap: read everything
                volumes = await self._read(api)
            except Exception as error:  # engine down or answering garbage: retry, never crash
                api = None
                engine = EngineStatus(reachable=False, error=f"{type(error).__name__}: {error}")
                if engine.reachable != self.engine.reachable or self.seq == 0:
                    log.warning(
                        "engine unreachable retry_every=%.1fs error=%s",
                        RECONNECT_SECONDS,
                        engine.error,
                    )
                await self._publish_if_changed(None, engine)
                wait = RECONNECT_SECONDS
            else:
                engine = EngineStatus(reachable=True, volumes_dir=self._volumes_dir)
                if not self.engine.reachable:
                    log.info("engine reachable volumes_dir=%s", self._volumes_dir)
                await self._publish_if_changed(volumes, engine)
                wait = (
                    self.settings.poll_safety_interval_seconds
                    if self._stream_healthy
                    else self.settings.poll_interval_seconds
                )
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=wait)
            except TimeoutError:
                self._other_events = True  # the clock's poll: read everything

    def _follow_events(self, loop: asyncio.AbstractEventLoop) -> None:
        """Thread: any volume or container event wakes the poller at once."""
        while True:  # a daemon thread: it ends with the process
            try:
                api = make_api_client(self.settings)
                stream = api.events(decode=True, filters={"type": ["volume", "container"]})
                self._stream_healthy = True
                loop.call_soon_threadsafe(self._read_everything)  # what happened while away
                log.info("following the engine's event stream")
                for event in stream:
                    log.debug(
                        "engine event type=%s action=%s id=%s",
                        event.get("Type"),
                        event.get("Action"),
                        (event.get("Actor") or {}).get("ID"),
                    )
                    loop.call_soon_threadsafe(self._note_event, event)
            except (docker.errors.DockerException, OSError, ValueError) as error:
                log.debug("event stream lost retry_in=%.1fs error=%s", RECONNECT_SECONDS, error)
            except RuntimeError:  # the loop closed: we are shutting down
                return
            self._stream_healthy = False  # polling on the clock again until it is back
            with contextlib.suppress(RuntimeError):  # the loop closed: we are shutting down
                loop.call_soon_threadsafe(self._read_everything)  # the stream ended: ask now
            time.sleep(RECONNECT_SECONDS)

    async def _serve_snapshots(self) -> None:
        assert self._outlet is not None
        while True:
            identity, payload = await self._outlet.request()
            try:
                request = decode(payload)
            except ValueError as error:
                log.warning("dropped invalid snapshot request error=%s", error)
                continue
            if not isinstance(request, SnapshotRequest):
                log.warning("dropped unexpected message kind=%s", request.kind)
                continue
            await self._outlet.reply(identity, encode(self.snapshot()))
            log.info("sent snapshot requester=%s seq=%d", request.requester, self.seq)

    async def _heartbeat_loop(self) -> None:
        assert self._outlet is not None
        while True:
            bus.check_bound(self._outlet.bound())
            beat = Heartbeat(
                service="watcher",
                instance=self.epoch,
                seq=self.seq,
                engine=self.engine,
                host=self.host_id,
            )
            await self._outlet.publish(HEARTBEAT_TOPIC, encode(beat))
            await asyncio.sleep(self.settings.heartbeat_interval_seconds)
