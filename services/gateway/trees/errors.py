"""What can go wrong asking for a tree; the HTTP layer (api/trees.py) gives each its status."""

from __future__ import annotations


class TreeError(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidTreePath(TreeError):
    """Not a path inside a volume: relative, with `.`/`..`, a NUL byte, or not decodable."""


class TreePathNotFound(TreeError):
    """No directory at that path in the stored tree (absent, or pruned away)."""


class NoTreeYet(TreeError):
    """The volume has had no native scan since trees were kept (du keeps none)."""
