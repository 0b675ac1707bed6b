"""Tasks for the keys, limits and usage tests (the `store` fixture is in tests/conftest.py)."""

from __future__ import annotations

from reelgate.domain.status import Status
from reelgate.domain.task import Task, TaskSpec, new_task_id
from reelgate.ports import TaskStore

MODEL = "doubao-seedance-1-0-pro"


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
