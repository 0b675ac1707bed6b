"""Filling a store fast: tasks made with the product's own types and SQL.

The schema comes from the store adapter's migrations (``SqliteStore.migrate``); the
rows are the product's ``Task`` objects through its ``INSERT_TASK`` and
``INSERT_EVENT`` statements, written with one ``executemany`` in one transaction, so
that 100,000 tasks take seconds rather than 100,000 durable commits.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.servers import OWNER
from reelgate.domain.status import Status
from reelgate.domain.task import Task, TaskSpec, new_task_id
from reelgate.services.tasks import output_key
from reelgate.store import sql
from reelgate.store.sqlite import SqliteStore

MODEL = "doubao-seedance-2-0-fast"
PROMPT = "A corgi surfing a huge wave at sunset, cinematic lighting, 35mm film, slow motion"


def finished_task(now: float, owner: str = OWNER) -> Task:
    """A SUCCESS task with its video key, as a finished 5 s 720p render leaves it."""
    spec = TaskSpec(MODEL, PROMPT, 5, "16:9", "720p")
    task_id = new_task_id()
    return Task(
        task_id,
        owner,
        spec,
        Status.SUCCESS,
        100,
        now - 60,
        now,
        completed_at=now,
        attempts=1,
        output_key=output_key(task_id),
    )


def submitted_task(now: float, *, resolution: str = "720p", owner: str = OWNER) -> Task:
    """A SUBMITTED 5 s 16:9 task, as a create leaves it."""
    spec = TaskSpec(MODEL, PROMPT, 5, "16:9", resolution)
    return Task(new_task_id(), owner, spec, Status.SUBMITTED, 0, now, now)


def migrate_sqlite(path: Path) -> None:
    """Create the schema in the SQLite file at ``path`` with the store adapter."""

    async def run() -> None:
        store = SqliteStore(path)
        try:
            await store.migrate()
        finally:
            await store.close()

    asyncio.run(run())


def seed_sqlite(path: Path, count: int) -> list[str]:
    """Migrate ``path`` and store ``count`` finished tasks of owner ``bench``; their ids.

    Each task gets the three events a real one has (SUBMITTED, IN_PROGRESS, SUCCESS).
    """
    migrate_sqlite(path)
    now = time.time()
    tasks = [finished_task(now) for _ in range(count)]
    insert_tasks(path, tasks)
    return [task.id for task in tasks]


def insert_tasks(path: Path, tasks: Sequence[Task]) -> None:
    """Insert ``tasks`` and their events into a migrated SQLite file, in one transaction."""
    events = []
    for task in tasks:
        events.append(sql.event_params(task, "created") | {"status": "SUBMITTED", "progress": 0})
        if task.status is not Status.SUBMITTED:
            events.append(
                sql.event_params(task, "attempt 1") | {"status": "IN_PROGRESS", "progress": 0}
            )
        if task.terminal:
            events.append(sql.event_params(task))
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(sql.INSERT_TASK, [sql.task_params(task) for task in tasks])
        conn.executemany(sql.INSERT_EVENT, events)
        conn.execute("COMMIT")
    finally:
        conn.close()


def query(path: Path, statement: str, params: Sequence[Any] = ()) -> list[Any]:
    """All rows of a read on a fresh connection to the SQLite file at ``path``.

    Fresh, and read to the end, so that no open read holds on to an old snapshot of a
    database that the server keeps writing.
    """
    conn = sqlite3.connect(path)
    try:
        return conn.execute(statement, params).fetchall()
    finally:
        conn.close()
