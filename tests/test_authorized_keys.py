"""VV_BUS_AUTHORIZED_KEYS (issue 16): the file the gateway of many hosts admits agents by."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import zmq

from common.authorized_keys import AuthorizedKeys, KeyFileChange, read_authorized_keys
from common.curve_keys import BusSecurityError


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


def test_the_file_is_read_again_when_it_changes_and_a_broken_one_keeps_the_keys(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    first, second = public_key(), public_key()
    path = tmp_path / "agents"
    path.write_text(f"{first} host-1\n")
    keys = read_authorized_keys(path)
    assert keys.reload_if_changed() is None  # unchanged: not read again
    path.write_text(f"{first} host-1\n{second} host-2\n")
    assert keys.reload_if_changed() == KeyFileChange(frozenset({"host-2"}), frozenset())
    assert keys.host_of(second) == "host-2" and keys.callback("volumeviz", second.encode())
    assert keys.reload_if_changed() is None
    path.write_text(f"{second} host-2\nnot-a-key host-3\n")
    with caplog.at_level(logging.ERROR, logger="bus.curve"):
        assert keys.reload_if_changed() is None
    assert "not reloaded, the keys before stay" in caplog.text and "line 2" in caplog.text
    assert keys.host_of(first) == "host-1"  # as before the broken file
    replaced = tmp_path / "agents.new"  # replaced whole, as a Kubernetes secret is
    replaced.write_text(f"{second} host-2\n")
    replaced.rename(path)
    assert keys.reload_if_changed() == KeyFileChange(frozenset(), frozenset({"host-1"}))
    assert keys.host_of(first) is None and not keys.callback("volumeviz", first.encode())
    path.unlink()
    assert keys.reload_if_changed() is None and keys.host_of(second) == "host-2"
