"""Shared fixtures: a real server on loopback, throwaway PostgreSQL databases."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.server import LiveServer, start_server


@pytest.fixture(scope="session")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """One server for the session: SQLite, local files, the preview renderer, 2 workers."""
    server = start_server(Path(tmp_path_factory.mktemp("live")), url_ttl=60)
    yield server
    server.stop()
