"""A tiny busybox image built offline, and a container helper for tests.

No registry is reachable in CI, so the image is a `docker import` of a tarball holding the
host's static busybox and one symlink per applet.
"""

from __future__ import annotations

import io
import shutil
import subprocess
import tarfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, overload

from docker.models.containers import Container

from tests.support.engine import EngineError, PrivateEngine

BUSYBOX_IMAGE = "vv-busybox:test"
_DIRS = ("bin", "sbin", "usr/bin", "usr/sbin", "etc", "tmp", "data", "proc", "sys", "dev")
_PT_INTERP = 3


def _is_static_elf(path: Path) -> bool:
    """True for an ELF executable without a program interpreter (statically linked)."""
    try:
        data = path.read_bytes()
    except OSError:
        return False
    if data[:4] != b"\x7fELF" or data[4] != 2:  # only 64-bit ELF is worth supporting
        return False
    order: Literal["little", "big"] = "little" if data[5] == 1 else "big"
    phoff = int.from_bytes(data[0x20:0x28], order)
    phentsize = int.from_bytes(data[0x36:0x38], order)
    phnum = int.from_bytes(data[0x38:0x3A], order)
    for i in range(phnum):
        start = phoff + i * phentsize
        if int.from_bytes(data[start : start + 4], order) == _PT_INTERP:
            return False
    return True


def find_static_busybox() -> Path:
    candidates = [shutil.which("busybox"), "/bin/busybox", "/usr/bin/busybox"]
    for candidate in candidates:
        if candidate and _is_static_elf(Path(candidate)):
            return Path(candidate)
    raise EngineError(
        "no static busybox found (needed to build the test image without a registry); "
        "install Debian's busybox-static package (`make test` does it when run as root)"
    )


def _applets(busybox: Path) -> list[str]:
    out = subprocess.run(
        [str(busybox), "--list-full"], capture_output=True, text=True, check=False
    ).stdout
    paths = [line.strip() for line in out.splitlines() if line.strip()]
    if not paths:  # very old busybox: names only
        names = subprocess.run(
            [str(busybox), "--list"], capture_output=True, text=True, check=True
        ).stdout.split()
        paths = [f"bin/{name}" for name in names]
    return [p for p in paths if p != "bin/busybox" and ".." not in p]


def busybox_rootfs_tar(busybox: Path | None = None) -> bytes:
    """An uncompressed rootfs tarball: /bin/busybox plus applet symlinks."""
    busybox = busybox or find_static_busybox()
    buf = io.BytesIO()
    now = int(time.time())
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name in _DIRS:
            info = tarfile.TarInfo(name)
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, now
            if name == "tmp":
                info.mode = 0o1777
            tar.addfile(info)
        binary = busybox.read_bytes()
        info = tarfile.TarInfo("bin/busybox")
        info.size, info.mode, info.mtime = len(binary), 0o755, now
        tar.addfile(info, io.BytesIO(binary))
        for path in _applets(busybox):
            link = tarfile.TarInfo(path)
            link.type, link.mode, link.mtime = tarfile.SYMTYPE, 0o777, now
            link.linkname = "/bin/busybox"
            tar.addfile(link)
    return buf.getvalue()


def build_busybox_image(engine: PrivateEngine, tag: str = BUSYBOX_IMAGE) -> str:
    """Import the busybox rootfs into `engine` as `tag`; returns the tag."""
    repository, _, version = tag.rpartition(":")
    engine.api.import_image_from_data(
        busybox_rootfs_tar(),
        repository=repository,
        tag=version,
        changes=[
            "ENV PATH=/usr/sbin:/usr/bin:/sbin:/bin",
            'CMD ["sh"]',
        ],
    )
    engine.client.images.get(tag)  # raises ImageNotFound if the import did not work
    return tag


@overload
def run_container(
    engine: PrivateEngine,
    image: str,
    volumes: Mapping[str, str] | None = ...,
    command: Sequence[str] | str | None = ...,
    detach: Literal[True] = ...,
    **kwargs: Any,
) -> Container: ...


@overload
def run_container(
    engine: PrivateEngine,
    image: str,
    volumes: Mapping[str, str] | None = ...,
    command: Sequence[str] | str | None = ...,
    *,
    detach: Literal[False],
    **kwargs: Any,
) -> bytes: ...


def run_container(
    engine: PrivateEngine,
    image: str,
    volumes: Mapping[str, str] | None = None,
    command: Sequence[str] | str | None = None,
    detach: bool = True,
    **kwargs: Any,
) -> Container | bytes:
    """Run a container on the private engine, always with `network_mode="none"`.

    `volumes` maps a volume name (or an absolute host path) to the mount point inside the
    container. With `detach=True` returns the `Container`; otherwise its output bytes
    (as `docker.containers.run` does). Other keyword arguments go to `containers.run`.
    """
    if kwargs.get("network_mode", "none") != "none":
        raise ValueError("test containers must run with network_mode='none'")
    kwargs["network_mode"] = "none"
    kwargs["volumes"] = {
        source: {"bind": target, "mode": "rw"} for source, target in (volumes or {}).items()
    }
    if command is not None and not isinstance(command, str):
        command = list(command)
    containers: Any = engine.client.containers  # the stubs' overloads do not fit **kwargs
    result: Container | bytes = containers.run(image, command, detach=detach, **kwargs)
    return result


def wait_container(container: Container, timeout: float = 30.0) -> int:
    """Wait for a detached container to exit; returns its exit code."""
    result = container.wait(timeout=timeout)
    return int(result["StatusCode"])
