"""Scan failures as the contract names them, and the root check every method shares."""

from __future__ import annotations

import errno
import os
import stat

from common.messages import ScanErrorCode


class ScanError(Exception):
    """A scan that could not produce a result; `code` is one of the contract's scan codes."""

    def __init__(self, code: ScanErrorCode, message: str) -> None:
        super().__init__(message)
        self.code: ScanErrorCode = code
        self.message = message


def code_for_errno(error: OSError) -> ScanErrorCode:
    """Map an OSError about the scan root to the contract's code."""
    if error.errno in (errno.EACCES, errno.EPERM):
        return "SCAN_PERMISSION_ERROR"
    if error.errno in (errno.ENOENT, errno.ENOTDIR, errno.ELOOP, errno.ENAMETOOLONG):
        return "SCAN_PATH_ERROR"
    return "SCAN_FAILED"


def check_root(root: str) -> os.stat_result:
    """lstat the root: it must exist and be a real directory (a symlink is not followed)."""
    try:
        info = os.lstat(root)
    except OSError as exc:
        raise ScanError(code_for_errno(exc), f"cannot stat {root!r}: {exc.strerror}") from exc
    if not stat.S_ISDIR(info.st_mode):
        raise ScanError("SCAN_PATH_ERROR", f"{root!r} is not a directory")
    return info
