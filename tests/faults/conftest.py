"""Fixtures of the fault tests: each database, and the processes a test starts."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.pg import temporary_database
from tests.procs import Proc


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The URL of an empty database: a SQLite file, or a temporary PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'reelgate.db'}"
    else:
        with temporary_database() as url:
            yield url


@pytest.fixture
def procs() -> Iterator[list[Proc]]:
    """Processes a test started; every one still running is stopped afterwards."""
    started: list[Proc] = []
    yield started
    for proc in reversed(started):
        proc.stop(timeout=10)
