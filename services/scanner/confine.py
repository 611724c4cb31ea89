"""A scan never touches anything outside the volume's own mountpoint.

The threat is not the volume's *name*: names never become paths here (the gateway rejects
hostile ones, and the mountpoint comes from the engine, not from the name). It is the
*mountpoint* the engine reports: a compromised engine, a volume plugin or anyone who can
make the engine say so could name `/`, `/etc`, `/var/lib/docker/volumes/../../..`, or a
path through a symlink, and a scan would then measure (and so reveal the shape of) any
directory of the host. So before a scan:

* the mountpoint must be a normalized absolute path (no `..`, `.`, `//`, trailing `/`,
  NUL or other control characters), strictly below an allowed root: `VV_SCAN_ROOTS` when
  set (the operator's word, which no engine report can widen), otherwise the engine's own
  volumes directory (`DockerRootDir/volumes`, read once by the watcher);
* it is opened one component at a time from that root with O_NOFOLLOW, so no symlink on
  the way is followed, and the scan then runs on that descriptor, never on the path again.

Everything refused is a SCAN_PATH_ERROR naming the reason.
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Sequence

from services.scanner.errors import ScanError, code_for_errno

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC


def _refuse(mountpoint: str, why: str) -> ScanError:
    return ScanError("SCAN_PATH_ERROR", f"mountpoint {mountpoint!r} refused: {why}")


def relative_to_allowed(mountpoint: str, allowed_roots: Sequence[str]) -> tuple[str, str]:
    """(root, path below it) for a mountpoint strictly below one of `allowed_roots`."""
    if any(ord(char) < 0x20 or ord(char) == 0x7F for char in mountpoint):
        raise _refuse(mountpoint, "control character in the path")
    if not mountpoint.startswith("/") or posixpath.normpath(mountpoint) != mountpoint:
        raise _refuse(mountpoint, "not a normalized absolute path")
    if mountpoint.startswith("//"):
        raise _refuse(mountpoint, "not a normalized absolute path")
    for root in allowed_roots:
        base = posixpath.normpath(root) if root.startswith("/") else None
        if base is None:
            continue  # a relative allowed root allows nothing
        prefix = base if base.endswith("/") else base + "/"
        if mountpoint.startswith(prefix) and len(mountpoint) > len(prefix):
            return base, mountpoint[len(prefix) :]
    shown = ", ".join(allowed_roots) or "none known"
    raise _refuse(mountpoint, f"not below an allowed volumes directory ({shown})")


def open_confined(mountpoint: str, allowed_roots: Sequence[str]) -> int:
    """An O_DIRECTORY descriptor of the mountpoint, reached without following a symlink."""
    root, relative = relative_to_allowed(mountpoint, allowed_roots)
    try:
        fd = os.open(root, _DIR_FLAGS)  # the allowed root itself may be a symlink (admin's)
    except OSError as exc:
        raise ScanError(code_for_errno(exc), f"cannot open {root!r}: {exc.strerror}") from exc
    try:
        for part in relative.split("/"):
            child = os.open(part, _DIR_FLAGS | os.O_NOFOLLOW, dir_fd=fd)
            os.close(fd)
            fd = child
    except OSError as exc:
        os.close(fd)
        raise ScanError(code_for_errno(exc), f"cannot open {mountpoint!r}: {exc.strerror}") from exc
    return fd


def real_path(fd: int) -> str:
    """Where an open directory really is, for logs and the filesystem type."""
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return f"/proc/self/fd/{fd}"


def allowed_roots(configured: Sequence[str], engine_volumes_dir: str | None) -> list[str]:
    """VV_SCAN_ROOTS when set, else the engine's volumes directory, else nothing."""
    if configured:
        return list(configured)
    return [engine_volumes_dir] if engine_volumes_dir else []
