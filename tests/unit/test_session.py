"""What the test session does before any test runs (tests/conftest.py)."""

from __future__ import annotations

import os
import socket

import pytest

from ..conftest import is_local, scratch_keyspace


def test_no_kv_variable_from_the_shell_reaches_a_test() -> None:
    # tests/test_suite.py runs this with KV_KEYSPACE, KV_JWT_SECRET... exported.
    seen = {n for n in os.environ if n.startswith("KV_")}
    assert seen <= {"KV_CONTACT_POINTS", "KV_CASSANDRA_PORT", "KV_LOCAL_DC", "KV_TEST_ALLOW_REMOTE"}
    if os.environ.get("KV_TEST_ALLOW_REMOTE") != "1":
        assert seen <= {"KV_CONTACT_POINTS"}


@pytest.mark.parametrize(
    ("contact_point", "local"),
    [
        ("127.0.0.1", True),
        (" 127.0.0.3", True),
        ("localhost", True),
        ("::1", True),
        ("10.0.0.5", False),
        ("cassandra.prod.example.com", False),
        ("0.0.0.0", False),
    ],
)
def test_only_loopback_addresses_are_local(contact_point: str, local: bool) -> None:
    assert is_local(contact_point) is local


def test_scratch_keyspaces_name_their_process_and_are_valid_cql() -> None:
    name = scratch_keyspace("late")
    assert name.startswith(f"kv_test_{os.getpid()}_late_") and len(name) <= 48


def test_a_unit_test_cannot_open_a_connection() -> None:
    with pytest.raises(AssertionError, match="opened a network connection"):
        socket.create_connection(("127.0.0.1", 9042), timeout=1)
