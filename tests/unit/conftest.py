"""Unit tests do no I/O: any network connection fails the test that tries it.

So `pytest tests/unit` needs no node, and a unit test that starts to need one
is caught here rather than by a slow CI run.
"""

from __future__ import annotations

import socket

import pytest


class NetworkUsed(AssertionError):
    pass


def _refuse(*args: object, **kwargs: object) -> None:
    raise NetworkUsed(f"a unit test opened a network connection {args[1:]}; move it out of unit/")


@pytest.fixture(autouse=True)
def _no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(socket.socket, "connect", _refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", _refuse)
    monkeypatch.setattr(socket, "create_connection", _refuse)
