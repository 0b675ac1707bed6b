"""Shared fixtures: a real server on loopback, throwaway PostgreSQL databases."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from reelgate.ports import TaskStore
from reelgate.store import open_store
from tests.pg import temporary_database, truncate
from tests.server import LiveServer, start_server


@pytest.fixture(scope="session")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """One server for the session: SQLite, local files, the preview renderer, 2 workers."""
    server = start_server(Path(tmp_path_factory.mktemp("live")), url_ttl=60)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def pg_url() -> Iterator[str]:
    """A PostgreSQL database of this module's own, dropped after it."""
    with temporary_database() as url:
        yield url


@pytest.fixture(params=["memory", "sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[TaskStore]:
    """A fresh, migrated store of each kind (memory, SQLite, PostgreSQL)."""
    if request.param == "memory":
        url = "memory:"
    elif request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'tasks.db'}"
    else:
        url = request.getfixturevalue("pg_url")
    s = open_store(url)
    await s.migrate()
    await s.migrate()  # idempotent
    if request.param == "postgresql":
        truncate(url)
    yield s
    await s.close()
