"""Fixtures of the client tests: the stand-in server, fast retry settings.

``live_server`` is the real reelgate server of ``tests/conftest.py``; with
``REELGATE_CLIENT_STANDIN=1`` the client tests run against the stand-in instead
(``fakeserver.py``), so that the SDK can be checked without the server side.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
from fakeserver import FakeServer

from reelgate.client import Client, RetryPolicy

FAST_RETRY = RetryPolicy(max_retries=3, initial_backoff=0.01, max_backoff=0.05)
"""Retries that keep the tests fast (the defaults wait 0.5 s and more)."""

POLL = 0.05
"""Seconds between polls in the tests."""


@pytest.fixture(scope="session")
def live_server(request: pytest.FixtureRequest) -> Iterator[Any]:
    """The real server, or the stand-in where ``REELGATE_CLIENT_STANDIN`` is set."""
    if os.environ.get("REELGATE_CLIENT_STANDIN"):
        with FakeServer() as server:
            yield server
    else:
        yield request.getfixturevalue("live_server")


@pytest.fixture
def fake_server() -> Iterator[FakeServer]:
    """A fresh stand-in server with fault injection, on a free loopback port."""
    with FakeServer() as server:
        yield server


@pytest.fixture
def client(fake_server: FakeServer) -> Iterator[Client]:
    """A blocking client of the stand-in, with fast retries."""
    with Client(fake_server.base_url, fake_server.api_key, retry=FAST_RETRY, timeout=5) as c:
        yield c


@pytest.fixture
def live_client(live_server: Any) -> Iterator[Client]:
    """A blocking client of ``live_server``."""
    with Client(live_server.base_url, live_server.api_key, retry=FAST_RETRY, timeout=30) as c:
        yield c
