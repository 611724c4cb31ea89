"""Known file trees written into a volume's mountpoint from the host (tests run as root)."""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path
from typing import Any

from tests.support.engine import PrivateEngine


def mountpoint(engine: PrivateEngine, volume: str) -> Path:
    return Path(engine.api.inspect_volume(volume)["Mountpoint"])


def make_known_tree(root: Path) -> None:
    """Nested dirs, hardlinks, symlinks (to /, a loop, dangling), sparse, empty, FIFO, socket."""
    (root / "a" / "b" / "c").mkdir(parents=True)
    (root / "empty-dir" / "also-empty").mkdir(parents=True)
    (root / "a" / "one.txt").write_bytes(b"x" * 1000)
    (root / "a" / "b" / "two.bin").write_bytes(os.urandom(70_000))
    (root / "a" / "b" / "c" / "three").write_bytes(b"y" * 4097)
    os.link(root / "a" / "b" / "two.bin", root / "hardlink-to-two")
    os.link(root / "a" / "b" / "two.bin", root / "a" / "b" / "c" / "another-link")
    (root / "empty-file").touch()
    (root / "a" / "empty-too").touch()
    with open(root / "sparse", "wb") as sparse:
        sparse.truncate(10 * 1024 * 1024)
        sparse.seek(5 * 1024 * 1024)
        sparse.write(b"data")
    os.symlink("/", root / "link-to-root")
    os.symlink("loop-b", root / "loop-a")
    os.symlink("loop-a", root / "loop-b")
    os.symlink("a/b", root / "link-to-dir")
    os.symlink("does-not-exist", root / "dangling")
    os.mkfifo(root / "a" / "fifo")
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(root / "a" / "sock"))
    server.close()


def make_many_files(root: Path, count: int, per_dir: int = 1000) -> None:
    for index in range(count):
        directory = root / f"d{index // per_dir:04d}"
        if index % per_dir == 0:
            directory.mkdir()
        (directory / f"f{index}").write_bytes(b"z" * (index % 7))


def du_bytes(path: Path) -> int:
    out = subprocess.run(["du", "-s", "-B1", str(path)], check=True, capture_output=True, text=True)
    return int(out.stdout.split()[0])


def engine_volume_sizes(engine: PrivateEngine) -> dict[str, int]:
    """The engine's own figure for each volume (`GET /system/df`)."""
    body: dict[str, Any] = engine.api.df()
    return {
        volume["Name"]: int(volume["UsageData"]["Size"])
        for volume in body.get("Volumes") or []
        if volume.get("UsageData") and volume["UsageData"]["Size"] >= 0
    }
