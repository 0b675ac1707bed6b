"""Cancel and delete, one contract for every TaskStore adapter: the fake, SQLite and
PostgreSQL."""

from __future__ import annotations

import pytest

from reelgate.domain.errors import IllegalTransition, LeaseLost
from reelgate.domain.status import CANCELLED, CANCELLED_MESSAGE, Phase, Status
from reelgate.domain.task import Task
from reelgate.ports import Move, TaskStore
from tests.fakes import claim_one, make_task

LEASE = 30.0


async def _in_phase(store: TaskStore, phase: Phase) -> Task:
    """A new task walked to ``phase`` by the moves the workers make."""
    task = make_task()
    await store.create_task(task)
    if phase is Phase.QUEUED:
        return task
    if phase is Phase.RENDERING:
        claimed = await claim_one(
            store, worker="w1", now=2000.0, lease_seconds=LEASE, max_attempts=3
        )
        assert claimed is not None and claimed.phase is Phase.RENDERING
        return claimed
    fields = {"provider": "ark", "upstream_model": "m", "lease_owner": "w1", "lease_until": 9e9}
    task = await store.move(
        Move(task.id, frozenset({Phase.QUEUED}), Phase.SUBMITTING, 2000.0, fields=fields)
    )
    if phase is Phase.SUBMITTING:
        return task
    fields = {"upstream_id": "cgt-1", "watcher": "p1", "lease_owner": None, "lease_until": None}
    task = await store.move(
        Move(task.id, frozenset({Phase.SUBMITTING}), Phase.WATCHING, 2001.0, fields=fields)
    )
    if phase is Phase.WATCHING:
        return task
    task = await store.move(
        Move(task.id, frozenset({Phase.WATCHING}), Phase.REHOSTING, 2002.0, fields={})
    )
    assert phase is Phase.REHOSTING
    return task


@pytest.mark.parametrize(
    "phase",
    [Phase.QUEUED, Phase.SUBMITTING, Phase.RENDERING, Phase.WATCHING, Phase.REHOSTING],
)
async def test_cancel_ends_any_running_phase_failed(store: TaskStore, phase: Phase) -> None:
    task = await _in_phase(store, phase)
    cancelled = await store.cancel_task(task.id, now=3000.0)
    assert (cancelled.phase, cancelled.status) == (Phase.DONE, Status.FAILED)
    assert (cancelled.error_code, cancelled.error_message) == (CANCELLED, CANCELLED_MESSAGE)
    assert cancelled.cancelled and cancelled.completed_at == 3000.0
    assert (cancelled.lease_owner, cancelled.watcher, cancelled.next_check_at) == (None,) * 3
    assert cancelled.upstream_id == task.upstream_id  # the worker still needs it upstream
    assert await store.get_task(task.id) == cancelled
    events = await store.list_events(task.id)
    assert (events[-1].status, events[-1].detail) == (Status.FAILED, CANCELLED)
    assert await store.cancelled_since(2999.0) == [task.id]
    assert await store.cancelled_since(3000.5) == []


async def test_a_finished_or_unknown_task_is_not_cancelled(store: TaskStore) -> None:
    task = await _in_phase(store, Phase.RENDERING)
    done = await store.finish_task(
        task.id, worker="w1", now=2500.0, status=Status.SUCCESS, output_key="videos/x.mp4"
    )
    with pytest.raises(IllegalTransition):
        await store.cancel_task(task.id, now=3000.0)
    assert await store.get_task(task.id) == done
    with pytest.raises(IllegalTransition):
        await store.cancel_task("task_missing", now=3000.0)
    cancelled = await store.cancel_task((await _in_phase(store, Phase.QUEUED)).id, now=3000.0)
    with pytest.raises(IllegalTransition):  # twice: the second matches nothing
        await store.cancel_task(cancelled.id, now=3001.0)
    assert await store.cancelled_since(0.0) == [cancelled.id]


async def test_the_holder_of_a_cancelled_task_can_write_nothing(store: TaskStore) -> None:
    task = await _in_phase(store, Phase.RENDERING)
    await store.cancel_task(task.id, now=2100.0)
    with pytest.raises(LeaseLost):
        await store.heartbeat(task.id, worker="w1", now=2101.0, lease_seconds=LEASE, progress=50)
    with pytest.raises(LeaseLost):
        await store.finish_task(task.id, worker="w1", now=2102.0, status=Status.SUCCESS)
    with pytest.raises(IllegalTransition):
        await store.move(
            Move(task.id, frozenset({Phase.RENDERING}), Phase.RENDERING, 2103.0, fields={})
        )
    claimed = await claim_one(store, worker="w2", now=9000.0, lease_seconds=LEASE, max_attempts=3)
    assert claimed is None  # never claimed again, however old its lease
    watched = await _in_phase(store, Phase.WATCHING)
    await store.cancel_task(watched.id, now=2100.0)
    assert await store.claim_watch(poller="p2", now=9000.0, limit=10) == []


async def test_delete_forgets_the_task_and_its_events_only(store: TaskStore) -> None:
    doomed, kept = make_task(1000.0), make_task(1001.0)
    await store.create_task(doomed)
    await store.create_task(kept)
    await store.cancel_task(doomed.id, now=2000.0)
    assert await store.delete_task(doomed.id) is True
    assert await store.get_task(doomed.id) is None
    assert await store.list_events(doomed.id) == []
    assert await store.delete_task(doomed.id) is False
    assert await store.get_task(kept.id) == kept
    assert [e.status for e in await store.list_events(kept.id)] == [Status.SUBMITTED]
    # The cancel log outlives the task: a worker still learns of the cancel.
    assert await store.cancelled_since(1999.0) == [doomed.id]
