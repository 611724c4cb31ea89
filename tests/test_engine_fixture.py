"""The private Docker engine fixture is real, private and usable offline."""

from __future__ import annotations

import uuid
from pathlib import Path

from tests.support.engine import PrivateEngine
from tests.support.images import run_container, wait_container

DEFAULT_SOCKET = Path("/var/run/docker.sock")


def test_engine_is_private(docker_engine: PrivateEngine) -> None:
    assert docker_engine.host.startswith("unix:///tmp/")
    assert docker_engine.host != f"unix://{DEFAULT_SOCKET}"
    assert Path(docker_engine.host.removeprefix("unix://")).is_socket()
    info = docker_engine.client.info()
    root_dir = Path(info["DockerRootDir"])
    assert root_dir == docker_engine.data_root
    assert root_dir.is_relative_to(docker_engine.root)
    assert docker_engine.root.is_relative_to("/tmp")
    assert docker_engine.api.ping()


def test_volume_create_and_list(engine: PrivateEngine) -> None:
    name = f"vv-test-{uuid.uuid4().hex[:8]}"
    volume = engine.client.volumes.create(name=name, labels={"vv.test": "1"})
    names = [v.name for v in engine.client.volumes.list()]
    assert name in names
    mountpoint = Path(volume.attrs["Mountpoint"])
    assert mountpoint.is_relative_to(engine.data_root)


def test_busybox_container_writes_into_volume(engine: PrivateEngine, busybox_image: str) -> None:
    name = f"vv-test-{uuid.uuid4().hex[:8]}"
    volume = engine.client.volumes.create(name=name)
    container = run_container(
        engine, busybox_image, volumes={name: "/data"}, command=["sh", "-c", "echo hi > /data/f"]
    )
    assert wait_container(container) == 0
    container.reload()
    assert container.attrs["HostConfig"]["NetworkMode"] == "none"
    written = Path(volume.attrs["Mountpoint"]) / "f"
    assert written.read_text() == "hi\n"


def test_engine_fixture_cleans_between_tests(engine: PrivateEngine) -> None:
    # The previous tests used the function-scoped `engine`, which empties it afterwards.
    assert engine.client.volumes.list() == []
    assert engine.client.containers.list(all=True) == []
