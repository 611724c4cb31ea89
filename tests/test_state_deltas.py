"""The watcher publishes each change as a delta of the volumes it touched (Clone pattern),
and the gateway's catalog applies it at the cost of those volumes."""

from __future__ import annotations

from pathlib import Path

import zmq

from common.messages import StateDelta, decode
from common.settings import Settings
from services.gateway.readmodel.catalog import VolumeCatalog
from tests.support.engine import PrivateEngine
from tests.support.processes import Stack
from tests.support.records import volume_record


def _delta_naming(subscriber: zmq.Socket[bytes], name: str, timeout_ms: int = 15_000) -> StateDelta:
    """The first delta that adds, changes or removes `name` (the subscriber may also see
    the watcher's first one, of every volume, if it joined before that was published)."""
    while subscriber.poll(timeout_ms):
        _topic, payload = subscriber.recv_multipart()
        message = decode(payload)
        if isinstance(message, StateDelta) and (
            name in message.removed or any(r.name == name for r in message.upserts)
        ):
            return message
    raise AssertionError(f"no state delta named {name}")


def test_a_created_and_a_removed_volume_are_one_small_delta_each(
    engine: PrivateEngine, stack: Stack
) -> None:
    for index in range(50):
        engine.client.volumes.create(f"vv-delta-{index:02d}")
    stack.start("watcher")
    settings = Settings(VV_RUNTIME_DIR=stack.runtime_dir)
    context = zmq.Context()
    subscriber = context.socket(zmq.SUB)
    subscriber.setsockopt(zmq.SUBSCRIBE, b"")
    subscriber.connect(settings.state_endpoint)
    try:
        # A heartbeat received: the subscription is in place (a PUB drops what is sent to a
        # subscriber still joining), and the first delta, of every volume, is behind us.
        assert subscriber.poll(30_000), "no heartbeat from the watcher"
        stack["watcher"].wait_for_log("published state seq=1", timeout=30)
        engine.client.volumes.create("vv-delta-new")
        created = _delta_naming(subscriber, "vv-delta-new")
        assert [record.name for record in created.upserts] == ["vv-delta-new"]
        assert created.removed == ()
        engine.client.volumes.get("vv-delta-03").remove()
        removed = _delta_naming(subscriber, "vv-delta-03")
        assert removed.upserts == () and removed.removed == ("vv-delta-03",)
        assert removed.seq == created.seq + 1 and removed.epoch == created.epoch
    finally:
        subscriber.close()
        context.term()


def test_the_catalog_applies_deltas_in_name_order_and_names_what_came_and_went(
    tmp_path: Path,
) -> None:
    catalog = VolumeCatalog()
    seen: list[tuple[frozenset[str], frozenset[str]]] = []
    catalog.on_membership(lambda added, removed: seen.append((added, removed)))
    catalog.replace_volumes(tuple(volume_record(name) for name in ("b", "d", "f")))
    version = catalog.version
    assert catalog.apply_delta([volume_record("a"), volume_record("e")], ["d"])
    assert catalog.names() == ["a", "b", "e", "f"]
    assert catalog.version == version + 1
    assert seen[-1] == (frozenset({"a", "e"}), frozenset({"d"}))
    assert catalog.apply_delta([volume_record("b", driver="other")], [])  # a change, no membership
    assert catalog.get("b") is not None and catalog.get("b").record.driver == "other"  # type: ignore[union-attr]
    assert len(seen) == 2
    assert not catalog.apply_delta([volume_record("a")], ["zz"])  # nothing new: nothing changes
    assert catalog.names() == ["a", "b", "e", "f"]
