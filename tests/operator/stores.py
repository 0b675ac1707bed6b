"""Fixtures of the keys, limits and usage tests: every store, and tasks to put in them."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from reelgate.domain.status import Status
from reelgate.domain.task import Task, TaskSpec, new_task_id
from reelgate.ports import TaskStore
from reelgate.store import open_store
from tests.pg import temporary_database, truncate

MODEL = "doubao-seedance-1-0-pro"


@pytest.fixture(scope="module")
def quota_pg_url() -> Iterator[str]:
    with temporary_database() as url:
        yield url


@pytest.fixture(params=["memory", "sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[TaskStore]:
    """A fresh, migrated store of each kind."""
    if request.param == "memory":
        url = "memory:"
    elif request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'tasks.db'}"
    else:
        url = request.getfixturevalue("quota_pg_url")
    opened = open_store(url)
    await opened.migrate()
    if request.param == "postgresql":
        truncate(url)
    yield opened
    await opened.close()


def new_task(owner: str, now: float, *, seconds: int = 5, model: str = MODEL) -> Task:
    """A SUBMITTED task of ``owner`` created at ``now``."""
    spec = TaskSpec(model, "a prompt", seconds, "16:9", "720p")
    return Task(new_task_id(), owner, spec, Status.SUBMITTED, 0, now, now)


async def finish(store: TaskStore, task: Task, status: Status, now: float) -> Task:
    """Claim ``task`` (the oldest queued one) and end it in ``status`` at ``now``."""
    claimed = await store.claim_tasks(
        worker="w", now=now, lease_seconds=60, max_attempts=3, limit=1
    )
    assert [t.id for t in claimed] == [task.id]
    code = None if status is Status.SUCCESS else "render_error"
    return await store.finish_task(
        task.id,
        worker="w",
        now=now,
        status=status,
        output_key=None if code else f"videos/{task.id}.1.mp4",
        error_code=code,
        error_message=code,
    )
