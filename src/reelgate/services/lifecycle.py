"""Cancel and delete: end a task early, or forget it with its files.

``TaskService.cancel`` and ``TaskService.delete`` check the owner and call these. A
cancel is one conditional statement in the store (``TaskStore.cancel_task``: any phase
but DONE -> DONE, FAILED, error code ``cancelled``); stopping the work under way is the
worker's (``reelgate.worker.cancels``). A delete cancels first when the task still
runs, then deletes every file the task may have stored, then its rows.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from reelgate import metrics
from reelgate.domain.errors import IllegalTransition, TaskNotCancellable, TaskNotFound
from reelgate.domain.task import Task
from reelgate.ports import BlobStore, Clock, TaskStore

log = logging.getLogger("reelgate.tasks")


async def cancel(store: TaskStore, clock: Clock, task: Task) -> Task:
    """Cancel ``task`` (as just read); the task as it is afterwards.

    A task already cancelled is answered as it is (a retried cancel succeeds); any other
    finished task is ``TaskNotCancellable``. A task that finished or was deleted while
    the cancel ran is answered as the store has it then.
    """
    if task.terminal:
        if task.cancelled:
            return task
        raise not_cancellable(task)
    try:
        cancelled = await store.cancel_task(task.id, now=clock())
    except IllegalTransition:
        current = await store.get_task(task.id)
        if current is None:
            raise TaskNotFound() from None
        if current.cancelled:
            return current
        raise not_cancellable(current) from None
    metrics.task_finished(cancelled, metrics.CANCELLED)
    return cancelled


def not_cancellable(task: Task) -> TaskNotCancellable:
    return TaskNotCancellable(
        f"the task already finished ({task.status.value}); only a SUBMITTED or "
        "IN_PROGRESS task can be cancelled"
    )


def stored_keys(
    task: Task, video: Callable[[str, int], str], thumbnail: Callable[[str, int], str]
) -> list[str]:
    """Every blob key ``task`` may have stored: its input image, and each attempt's video
    and thumbnail (at ``video(id, attempt)`` and ``thumbnail(id, attempt)``)."""
    keys = [] if task.spec.input_key is None else [task.spec.input_key]
    for attempt in range(1, max(task.attempts, 1) + 1):
        keys += [video(task.id, attempt), thumbnail(task.id, attempt)]
    if task.output_key is not None and task.output_key not in keys:
        keys.append(task.output_key)
    return keys


async def delete(store: TaskStore, blobs: BlobStore, task: Task, keys: list[str]) -> None:
    """Delete the (finished) ``task``'s files ``keys``, then its rows.

    Files go first: should storage fail, the task stays (the client may retry the
    delete) rather than leave files that nothing names. ``TaskNotFound`` when another
    delete won the race.
    """
    await asyncio.gather(*(blobs.delete(key) for key in keys))
    if not await store.delete_task(task.id):
        raise TaskNotFound()
    log.info("task %s deleted, and its files", task.id)
