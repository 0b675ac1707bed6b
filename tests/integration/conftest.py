"""Fixtures of the integration tests: every TaskStore adapter, fresh for each test."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from reelgate.ports import TaskStore
from reelgate.store import open_store
from tests.pg import temporary_database, truncate


@pytest.fixture(scope="module")
def pg_url() -> Iterator[str]:
    with temporary_database() as url:
        yield url


@pytest.fixture(params=["memory", "sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[TaskStore]:
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
