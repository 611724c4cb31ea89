"""VV_BUS_AUTHORIZED_KEYS (issue 16): the file the gateway of many hosts admits agents by."""

from __future__ import annotations

import pytest
import zmq

from common.curve import AuthorizedKeys, BusSecurityError


def public_key() -> str:
    return zmq.curve_keypair()[0].decode()


def test_each_listed_key_speaks_for_its_host_and_no_other_key_gets_in() -> None:
    first, second = public_key(), public_key()
    keys = AuthorizedKeys.parse(f"# agents\n\n{first} host-1\n  {second}   host-2  \n", "f")
    assert keys.host_of(first) == "host-1" and keys.host_of(second) == "host-2"
    assert keys.callback("volumeviz", first.encode()) is True
    assert keys.callback("volumeviz", public_key().encode()) is False
    assert keys.host_of(None) is None and keys.host_of(public_key()) is None


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("short host-1", "line 1: not a Z85 CurveZMQ public key"),
        ("{key}", "line 1: expected '<public key> <host>'"),
        ("{key} host-1 extra", "line 1: expected '<public key> <host>'"),
        ("{key} ../etc", "line 1: host '../etc' is not a host name"),
        ("{key} host-1\n{key} host-2", "line 2: the key is listed for 'host-1' already"),
    ],
)
def test_a_line_that_is_not_a_key_and_a_host_is_refused_by_number(text: str, problem: str) -> None:
    with pytest.raises(BusSecurityError, match=problem):
        AuthorizedKeys.parse(text.format(key=public_key()), "f")


def test_a_key_holding_a_hash_is_a_key_and_a_commented_out_line_is_not() -> None:
    hashed = next(key for key in iter(public_key, None) if "#" in key)
    other = public_key()
    keys = AuthorizedKeys.parse(f"{hashed} host-1\n#{other} host-2\n# {other} host-3\n", "f")
    assert keys.hosts == {hashed: "host-1"}
