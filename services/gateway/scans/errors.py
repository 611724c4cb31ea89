"""What a scan request can be refused for; http/errors.py gives each its status and body."""

from __future__ import annotations


class ScanRequestError(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class UnknownVolume(ScanRequestError):
    """The engine lists no such volume."""

    def __init__(self, volume_id: str) -> None:
        super().__init__(f"volume {volume_id!r} not found")
        self.volume_id = volume_id


class NoScanner(ScanRequestError):
    """No scanner worker is alive to take the job."""

    def __init__(self) -> None:
        super().__init__("no scanner worker is alive")


class TooSoon(ScanRequestError):
    """The same request was made too recently; it may be made again after `retry_after`."""

    def __init__(self, reason: str, retry_after_seconds: int) -> None:
        super().__init__(reason)
        self.retry_after_seconds = retry_after_seconds
