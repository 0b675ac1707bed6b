"""The store's row mapping: ``TASK_COLUMNS`` read back into every field of a ``Task``."""

from __future__ import annotations

import dataclasses

from reelgate.domain.status import Phase, Status
from reelgate.domain.task import Task, TaskSpec
from reelgate.store import sql


def test_task_columns_follow_the_fields_of_a_task() -> None:
    spec = [field.name for field in dataclasses.fields(TaskSpec)]
    task = [field.name for field in dataclasses.fields(Task)]
    expected = task[:2] + spec + task[3:]  # the spec's columns where Task has its spec
    assert sql.TASK_COLUMNS.split(", ") == expected


def test_a_row_becomes_the_task_it_stores() -> None:
    row = [f"value {n}" for n in range(len(sql.TASK_COLUMNS.split(", ")))]
    row[8], row[19] = "IN_PROGRESS", "watching"
    task = sql.task_from_row(row)
    assert task.status is Status.IN_PROGRESS and task.phase is Phase.WATCHING
    assert task.spec == TaskSpec(*row[2:8])
    assert (task.id, task.owner, task.progress, task.faults) == (row[0], row[1], row[9], row[30])
    assert task.input_expired_at == row[-1]
    assert (task.error_message, task.provider) == (row[18], row[20])
