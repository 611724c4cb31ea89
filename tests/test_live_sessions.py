"""On a gateway of many hosts each host's tracker has a session (services/gateway/live/
session.py) that speaks to it in its engine's names and sets only its own host's figures:
a tracker can neither set, drop nor be asked about another host's volumes."""

from __future__ import annotations

import contextlib
from collections.abc import Coroutine
from datetime import UTC, datetime
from typing import Any

from common.messages import LiveFollow, LiveSize, LiveSizes, LiveStatus
from services.gateway.live.session import SessionTiming, TrackerSession
from services.gateway.readmodel.catalog import VolumeCatalog
from tests.support.records import volume_record

HOSTS = ("host-1", "host-2")
TIMING = SessionTiming(liveness_seconds=60, retransmit_after_seconds=60)


def _size(name: str, total: int) -> LiveSize:
    return LiveSize(
        volume_id=name,
        total_size=total,
        disk_usage=total,
        file_count=1,
        directory_count=1,
        updated_at=datetime(2026, 1, 2, tzinfo=UTC),
    )


def _run_now(coroutine: Coroutine[Any, Any, None]) -> None:
    with contextlib.suppress(StopIteration):
        coroutine.send(None)


class Sessions:
    def __init__(self) -> None:
        self.catalog = VolumeCatalog()
        self.catalog.list_hosts(frozenset(HOSTS))
        self.sent: list[tuple[bytes, LiveFollow]] = []
        self.by_host: dict[str, TrackerSession] = {}
        for host in HOSTS:
            self.catalog.host_volumes_dirs[host] = f"/{host}/volumes"
            self.catalog.apply_delta(
                [volume_record("x"), volume_record(f"only-{host}")], [], host=host
            )
            self.by_host[host] = TrackerSession(
                host, True, self.catalog, TIMING, self._send, _run_now, 1_000
            )

    async def _send(self, identity: bytes, message: LiveFollow) -> None:
        self.sent.append((identity, message))

    def hello(self, host: str) -> bytes:
        """Its tracker's first status; the identity it speaks under."""
        identity = f"tracker-{host}".encode()
        status = LiveStatus(
            tracker_id=identity.decode(), epoch="e", seq=0, follow_version=-1, mode="filesystem"
        )
        self.by_host[host].status(identity, status)
        return identity

    def sizes(self, host: str, seq: int, **fields: Any) -> None:
        message = LiveSizes(tracker_id=f"tracker-{host}", epoch="e", seq=seq, **fields)
        self.by_host[host].sizes(f"tracker-{host}".encode(), message)


def test_a_tracker_is_told_its_own_hosts_volumes_by_name() -> None:
    sessions = Sessions()
    identity = sessions.hello("host-1")
    (to, follow) = sessions.sent[-1]
    assert to == identity and follow.volumes_dir == "/host-1/volumes"
    assert sorted(target.volume_id for target in follow.volumes) == ["only-host-1", "x"]


def test_a_trackers_figures_count_for_its_host_only() -> None:
    sessions = Sessions()
    sessions.hello("host-1")
    sessions.hello("host-2")
    sessions.sizes("host-1", 1, sizes=(_size("x", 11),))
    sessions.sizes("host-2", 1, sizes=(_size("x", 22),))
    live = sessions.catalog.live
    assert live("host-1/x").total_size == 11 and live("host-2/x").total_size == 22  # type: ignore[union-attr]
    # Host 1's tracker naming host 2's volume sets nothing anywhere.
    sessions.sizes("host-1", 2, sizes=(_size("host-2/x", 99),))
    assert live("host-2/x").total_size == 22 and live("host-1/host-2/x") is None  # type: ignore[union-attr]
    sessions.sizes("host-1", 3, unfollowed=("host-2/x",))
    assert live("host-2/x") is not None
    # Its complete resend vouches for its own host's figures only.
    sessions.sizes("host-1", 4, complete=True)
    assert live("host-1/x") is None and live("host-2/x") is not None
    sessions.sizes("host-2", 2, unfollowed=("x",))
    assert live("host-2/x") is None


def test_a_volume_read_again_is_asked_of_its_hosts_tracker_by_name() -> None:
    sessions = Sessions()
    sessions.hello("host-1")
    identity = sessions.hello("host-2")
    sessions.by_host["host-2"].read_again("host-2/x")
    to, follow = sessions.sent[-1]
    assert to == identity and follow.resync == ("x",)


def test_a_lost_tracker_stales_its_hosts_figures_only() -> None:
    sessions = Sessions()
    for host in HOSTS:
        sessions.hello(host)
        sessions.sizes(host, 1, sizes=(_size("x", 5),))
    sessions.by_host["host-1"].tracker_lost()
    live = sessions.catalog.live
    assert live("host-1/x").stale and not live("host-2/x").stale  # type: ignore[union-attr]


def test_a_tracker_that_starts_following_moves_its_hosts_scheduled_walks_only() -> None:
    sessions = Sessions()
    for host in HOSTS:
        sessions.hello(host)
        sessions.sizes(host, 1, sizes=(_size("x", 5),))
    sessions.catalog.take_schedule_changes()
    sessions.catalog.vouching_changed("host-2")
    assert sessions.catalog.take_schedule_changes() == {"host-2/x"}
