"""One tracker's side of the live-size protocol (common/messages.py, "Live sizes"): the
tracker of one host's scanner pool (one host: the only one).

It tells the tracker which of its host's volumes exist (LiveFollow, at most once per
tracker heartbeat, so a burst of created volumes costs one message, not one each) and
takes its figures into the read model. Figures are absolute, so a lost LiveSizes costs
nothing but a resend: a gap in `seq`, a new tracker, or a status ahead of what arrived asks
for every figure again.

On a gateway of many hosts a tracker speaks of its own host's volumes by name, as its
engine names them; the session maps them to the catalog's ids (`<host>/<name>`) and back,
so a host's key can only ever set its own host's figures.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from common.messages import (
    LiveFollow,
    LiveSize,
    LiveSizes,
    LiveStatus,
    LiveTarget,
    split_volume_id,
    volume_id_of,
)
from services.gateway.readmodel.catalog import VolumeCatalog

log = logging.getLogger("gateway.live")

SendFollow = Callable[[bytes, LiveFollow], Coroutine[Any, Any, None]]


@dataclass(frozen=True, slots=True)
class _Asked:
    version: int
    resend: bool
    resync: tuple[str, ...]  # catalog ids
    sent_at: float


@dataclass(frozen=True, slots=True)
class SessionTiming:
    liveness_seconds: float  # silent longer: the tracker is not heard
    retransmit_after_seconds: float  # what a send asked is asked again after this


class TrackerSession:
    def __init__(
        self,
        host: str | None,
        enabled: bool,
        catalog: VolumeCatalog,
        timing: SessionTiming,
        send: SendFollow,
        spawn: Callable[[Coroutine[Any, Any, None]], None],
        first_version: int,
    ) -> None:
        self.host = host
        self.enabled = enabled  # VV_LIVE_SIZES is not off: follow sets are sent
        self.catalog = catalog
        self._timing = timing
        self._send = send
        self._spawn = spawn
        self.identity: bytes | None = None
        self.last_status: LiveStatus | None = None
        self._heard_at = 0.0
        self._epoch: str | None = None
        self._seq = 0
        self._next_version = first_version
        self._sent_version: int | None = None
        self._targets: tuple[LiveTarget, ...] = ()
        self._targets_key: tuple[int, str | None] | None = None
        self._sent_key: tuple[int, str | None] | None = None
        self._resync: set[str] = set()  # catalog ids, asked with the next send
        self._resend_wanted = False
        self._unacked: _Asked | None = None  # what the last send asked, until echoed
        self.resends = 0  # figures asked again (gaps, new trackers)
        self.lost = False  # a tracker was heard, then fell silent
        self._mode: str | None = None  # the tracker's, as last logged
        # (events, resyncs) of the trackers before this epoch's, and of this epoch's as last
        # heard: their sum only ever grows (counters in /metrics), across a restart or loss.
        self._carried = (0, 0)
        self._current = (0, 0)
        self._totals_epoch: str | None = None  # whose totals `_current` holds

    # --- what others ask --------------------------------------------------------------

    def heard(self) -> bool:
        fresh = time.monotonic() - self._heard_at <= self._timing.liveness_seconds
        return self.last_status is not None and fresh

    def active(self) -> bool:
        """Its tracker is heard and follows the filesystem."""
        status = self.last_status
        return self.heard() and status is not None and status.mode in ("filesystem", "directories")

    def events_total(self) -> int:
        return self._carried[0] + self._current[0]

    def resyncs_total(self) -> int:
        return self._carried[1] + self._current[1]

    # --- the tracker's messages -------------------------------------------------------

    def status(self, identity: bytes, message: LiveStatus) -> None:
        if message.mode != self._mode:
            log.info(
                "tracker mode tracker_id=%s host=%s mode=%s reason=%s",
                message.tracker_id,
                self.host or "-",
                message.mode,
                message.reason or "-",
            )
            self._mode = message.mode
        if message.epoch != self._totals_epoch:  # a new tracker: the one before's are carried
            self._carried = (self.events_total(), self.resyncs_total())
            self._totals_epoch = message.epoch
        self._current = (message.events_total, message.resyncs_total)
        self.identity, self.last_status, self._heard_at = identity, message, time.monotonic()
        self.lost = False
        if message.epoch != self._epoch:
            self.catalog.stale_live(self.host)  # a new tracker: nothing vouched until sent
        if message.epoch != self._epoch or message.seq > self._seq:
            if message.seq > 0:  # it sent figures we never had
                self._want_resend("its status is ahead of what arrived", message.tracker_id)
            self._epoch, self._seq = message.epoch, message.seq
        self._check_echo(message.follow_version)
        behind = message.follow_version != self._sent_version
        if behind or self._targets_changed() or self._resync or self._resend_wanted:
            self.send_follow()

    def _check_echo(self, applied: int) -> None:
        """What the last send asked is asked again if the tracker has not applied it in
        time (the send was lost: a full queue, a reconnect)."""
        asked = self._unacked
        if asked is None:
            return
        if applied >= asked.version:
            self._unacked = None
        elif time.monotonic() - asked.sent_at > self._timing.retransmit_after_seconds:
            self._unacked = None
            self._resend_wanted = self._resend_wanted or asked.resend
            self._resync |= set(asked.resync)

    def sizes(self, identity: bytes, message: LiveSizes) -> list[LiveSize]:
        """Takes the figures into the catalog; those it took, under the catalog's ids."""
        self.identity, self._heard_at = identity, time.monotonic()
        expected = self._seq + 1 if message.epoch == self._epoch else 1
        if message.seq != expected:
            self._want_resend(f"seq {message.seq} after {self._seq}", message.tracker_id)
            self.send_follow()
        self._epoch, self._seq = message.epoch, message.seq
        sizes = [size for size in map(self._as_catalog_id, message.sizes) if size is not None]
        if message.complete:  # every figure it vouches for: any other is not live
            vouched = {size.volume_id for size in sizes}
            for volume_id in self.catalog.live_ids(self.host):
                if volume_id not in vouched:
                    self.catalog.drop_live(volume_id)
        taken = []
        for size in sizes:
            if self.catalog.set_live(size):
                taken.append(size)
            else:  # not known yet (the watcher's state comes later): ask again once it is
                self._want_resend(f"{size.volume_id} not known yet", message.tracker_id)
        for name in message.unfollowed:
            if "/" not in name:
                self.catalog.drop_live(volume_id_of(self.host, name))
        return taken

    def tracker_lost(self) -> None:
        self.last_status = None
        self.lost = True
        self.catalog.stale_live(self.host)

    def read_again(self, volume_id: str) -> None:
        """The tracker reads the volume (a catalog id of this host) again."""
        self._resync.add(volume_id)
        self.send_follow()

    def forget(self, volume_id: str) -> None:
        self._resync.discard(volume_id)

    # --- sending ----------------------------------------------------------------------

    def _as_catalog_id(self, size: LiveSize) -> LiveSize | None:
        """Under the catalog's id; None for a name no engine gives (it holds a '/': it
        would name another host's volume)."""
        if "/" in size.volume_id:
            return None
        if self.host is None:
            return size
        return size.model_copy(update={"volume_id": volume_id_of(self.host, size.volume_id)})

    def _key(self) -> tuple[int, str | None]:
        return self.catalog.records_version_of(self.host), self.catalog.volumes_dir_of_host(
            self.host
        )

    def _current_targets(self) -> tuple[LiveTarget, ...]:
        """Local volumes without driver options (those mount something on `_data`)."""
        key = self._key()
        if key != self._targets_key:
            self._targets = tuple(
                LiveTarget(
                    volume_id=view.record.name,
                    mountpoint=view.record.mountpoint,
                    created_at=view.record.created_at,
                )
                for view in self.catalog.views(self.host)
                if view.record.driver == "local" and not view.record.options
            )
            self._targets_key = key
        return self._targets

    def _targets_changed(self) -> bool:
        return self._key() != self._sent_key

    def send_follow(self) -> None:
        """The follow set, with what is asked of it; kept for later until it can go."""
        if self.identity is None or not self.enabled or not self.catalog.has_state_of(self.host):
            return  # before the watcher's first state an empty set would drop every volume
        self._next_version += 1
        resync = tuple(sorted(self._resync))
        message = LiveFollow(
            version=self._next_version,
            volumes_dir=self.catalog.volumes_dir_of_host(self.host),
            volumes=self._current_targets(),
            resend=self._resend_wanted,
            resync=tuple(split_volume_id(volume_id)[1] for volume_id in resync),  # its names
        )
        if message.resend or message.resync:
            self._unacked = _Asked(message.version, message.resend, resync, time.monotonic())
        self._sent_version, self._sent_key = message.version, self._targets_key
        self._resync.clear()
        self._resend_wanted = False
        self._spawn(self._send(self.identity, message))

    def _want_resend(self, why: str, tracker_id: str) -> None:
        if not self._resend_wanted:
            self.resends += 1
            log.info(
                "asking the tracker for every figure tracker_id=%s host=%s reason=%s",
                tracker_id,
                self.host or "-",
                why,
            )
        self._resend_wanted = True
