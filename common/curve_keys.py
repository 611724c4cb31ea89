"""CurveZMQ keys as the settings and the key file give them (Z85, 40 characters), and the
error that keeps a service with an unsafe bus from starting."""

from __future__ import annotations

from zmq.utils import z85


class BusSecurityError(RuntimeError):
    """The bus cannot be opened safely with these settings: the service must not start."""


def is_z85_key(key: bytes) -> bool:
    try:
        return len(key) == 40 and len(z85.decode(key)) == 32
    except ValueError:
        return False
