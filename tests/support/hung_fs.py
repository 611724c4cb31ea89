"""A FUSE file system that stops answering until the test lets it go (a dead NFS server).

Run as its own process: `python -m tests.support.hung_fs MOUNTPOINT CONTROL_SOCKET`, or
through `mounted()`, which starts it, waits for the mount, and takes it down afterwards.
It holds one directory `dir` with two files. While the gate is closed, listing any
directory or asking for the free space blocks inside the kernel, as on a dead server. The
control socket takes one line per connection and answers one line:
    `blocked`  how many calls are waiting at the gate now
    `release`  open the gate for good (every waiting call returns)
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import mfusepy as fuse

from tests.support.processes import stop_process
from tests.support.waiting import wait_until

FILES = {"/dir/a": 1000, "/dir/b": 5000}
DIRS = {"/", "/dir"}
BLOCK = 512


class HungFs(fuse.Operations):  # type: ignore[misc]
    use_ns = True  # times in nanoseconds

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.blocked = 0
        self._lock = threading.Lock()
        self._now = time.time_ns()

    def getattr(self, path: str, fh: Any = None) -> dict[str, Any]:
        base = {"st_uid": 0, "st_gid": 0, "st_atime": self._now, "st_mtime": self._now,
                "st_ctime": self._now}  # fmt: skip
        if path in DIRS:
            return {**base, "st_mode": stat.S_IFDIR | 0o755, "st_nlink": 2, "st_size": 4096,
                    "st_blocks": 8}  # fmt: skip
        if path in FILES:
            size = FILES[path]
            return {**base, "st_mode": stat.S_IFREG | 0o644, "st_nlink": 1, "st_size": size,
                    "st_blocks": (size + BLOCK - 1) // BLOCK}  # fmt: skip
        raise fuse.FuseOSError(errno.ENOENT)

    def _wait_at_gate(self) -> None:
        with self._lock:
            self.blocked += 1
        try:
            self.gate.wait()  # the dead server: no answer until the test says so
        finally:
            with self._lock:
                self.blocked -= 1

    def statfs(self, path: str) -> dict[str, int]:
        self._wait_at_gate()
        return {"f_bsize": BLOCK, "f_frsize": BLOCK, "f_blocks": 1 << 20, "f_bfree": 1 << 19,
                "f_bavail": 1 << 19, "f_files": 1000, "f_ffree": 900, "f_namemax": 255}  # fmt: skip

    def readdir(self, path: str, fh: Any) -> list[str]:
        self._wait_at_gate()
        if path == "/":
            return [".", "..", "dir"]
        if path == "/dir":
            return [".", "..", "a", "b"]
        raise fuse.FuseOSError(errno.ENOENT)

    def read(self, path: str, size: int, offset: int, fh: Any) -> bytes:
        return b"\0" * max(0, min(size, FILES.get(path, 0) - offset))


def serve_control(fs: HungFs, path: str) -> None:
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen()
    while True:
        connection, _ = server.accept()
        with connection:
            command = connection.recv(64).decode().strip()
            if command == "release":
                fs.gate.set()
                connection.sendall(b"released\n")
            elif command == "blocked":
                connection.sendall(f"{fs.blocked}\n".encode())
            else:
                connection.sendall(b"unknown\n")


def control(path: str, command: str) -> str:
    """Send one command to a running hung_fs; its answer."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
        client.connect(path)
        client.sendall(command.encode() + b"\n")
        return client.recv(64).decode().strip()


@contextlib.contextmanager
def mounted(mountpoint: Path, control_path: Path) -> Iterator[Path]:
    """A hung file system mounted on `mountpoint` (gate closed); yields the control path."""
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.support.hung_fs", str(mountpoint), str(control_path)],
        cwd=Path(__file__).resolve().parents[2],
    )
    try:
        wait_until(
            lambda: os.path.ismount(mountpoint) and control_path.exists(),
            30,
            message="the FUSE file system never mounted",
        )
        yield control_path
    finally:
        with contextlib.suppress(OSError):
            control(str(control_path), "release")  # nothing stays stuck in it
        subprocess.run(["umount", "-l", str(mountpoint)], check=False)
        stop_process(process)


def main() -> None:
    mountpoint, control_path = sys.argv[1], sys.argv[2]
    fs = HungFs()
    threading.Thread(target=serve_control, args=(fs, control_path), daemon=True).start()
    # attr/entry caching off: every lookup reaches us, as on a server that stopped answering.
    fuse.FUSE(fs, mountpoint, foreground=True, nothreads=False, attr_timeout=0,
              entry_timeout=0, fsname="hungfs")  # fmt: skip


if __name__ == "__main__":
    os.umask(0o022)
    main()
