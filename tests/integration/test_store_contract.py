"""One contract for every TaskStore adapter: the fake, SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio

import pytest

from reelgate.domain.errors import IllegalTransition, LeaseLost, NotFound
from reelgate.domain.status import Status
from reelgate.domain.task import ApiKey, Task
from reelgate.ports import TaskStore
from tests.fakes import claim_one, make_task

LEASE = 30.0
MAX_ATTEMPTS = 3


async def test_create_and_get(store: TaskStore) -> None:
    task = make_task()
    await store.create_task(task)
    assert await store.get_task(task.id) == task
    assert await store.get_task("task_missing") is None
    events = await store.list_events(task.id)
    assert [e.status for e in events] == [Status.SUBMITTED]


async def test_claim_takes_oldest_first_and_only_once(store: TaskStore) -> None:
    late, early = make_task(2000.0), make_task(1000.0)
    await store.create_task(late)
    await store.create_task(early)
    first = await claim_one(
        store, worker="w1", now=3000.0, lease_seconds=LEASE, max_attempts=MAX_ATTEMPTS
    )
    assert first is not None and first.id == early.id
    assert first.status is Status.IN_PROGRESS
    assert (first.lease_owner, first.lease_until, first.attempts) == ("w1", 3030.0, 1)
    second = await claim_one(
        store, worker="w2", now=3000.0, lease_seconds=LEASE, max_attempts=MAX_ATTEMPTS
    )
    assert second is not None and second.id == late.id
    assert (
        await claim_one(
            store, worker="w3", now=3000.0, lease_seconds=LEASE, max_attempts=MAX_ATTEMPTS
        )
        is None
    )


async def test_claim_filters_models(store: TaskStore) -> None:
    task = make_task(model="doubao-seedance-1-0-pro")
    await store.create_task(task)
    kwargs = {"worker": "w", "now": 2000.0, "lease_seconds": LEASE, "max_attempts": 3}
    assert await claim_one(store, models=["doubao-seedance-2-0"], **kwargs) is None  # type: ignore[arg-type]
    claimed = await claim_one(store, models=["doubao-seedance-1-0-pro"], **kwargs)  # type: ignore[arg-type]
    assert claimed is not None and claimed.id == task.id


async def test_concurrent_claims_never_share_a_task(store: TaskStore) -> None:
    tasks = [make_task(1000.0 + i) for i in range(20)]
    for task in tasks:
        await store.create_task(task)

    async def claim(worker: str) -> Task | None:
        return await claim_one(
            store, worker=worker, now=5000.0, lease_seconds=LEASE, max_attempts=MAX_ATTEMPTS
        )

    claimed = await asyncio.gather(*(claim(f"w{i}") for i in range(30)))
    ids = [t.id for t in claimed if t is not None]
    assert sorted(ids) == sorted(t.id for t in tasks)


async def test_heartbeat_never_lowers_progress(store: TaskStore) -> None:
    await store.create_task(make_task())
    task = await claim_one(
        store, worker="w1", now=2000.0, lease_seconds=LEASE, max_attempts=MAX_ATTEMPTS
    )
    assert task is not None
    beat = await store.heartbeat(task.id, worker="w1", now=2010.0, lease_seconds=LEASE, progress=40)
    assert (beat.progress, beat.lease_until) == (40, 2040.0)
    beat = await store.heartbeat(task.id, worker="w1", now=2011.0, lease_seconds=LEASE, progress=10)
    assert beat.progress == 40
    with pytest.raises(LeaseLost):
        await store.heartbeat(
            task.id, worker="intruder", now=2012.0, lease_seconds=LEASE, progress=90
        )


async def test_expired_lease_is_reclaimed_and_keeps_progress(store: TaskStore) -> None:
    await store.create_task(make_task())
    task = await claim_one(
        store, worker="w1", now=2000.0, lease_seconds=LEASE, max_attempts=MAX_ATTEMPTS
    )
    assert task is not None
    await store.heartbeat(task.id, worker="w1", now=2001.0, lease_seconds=LEASE, progress=55)
    assert (
        await claim_one(
            store, worker="w2", now=2020.0, lease_seconds=LEASE, max_attempts=MAX_ATTEMPTS
        )
        is None
    )
    again = await claim_one(
        store, worker="w2", now=2040.0, lease_seconds=LEASE, max_attempts=MAX_ATTEMPTS
    )
    assert again is not None and again.id == task.id
    assert (again.status, again.progress, again.attempts) == (Status.IN_PROGRESS, 55, 2)
    with pytest.raises(LeaseLost):
        await store.finish_task(task.id, worker="w1", now=2041.0, status=Status.SUCCESS)
    done = await store.finish_task(
        task.id, worker="w2", now=2042.0, status=Status.SUCCESS, output_key="videos/x.mp4"
    )
    assert (done.status, done.progress, done.completed_at) == (Status.SUCCESS, 100, 2042.0)
    assert done.output_key == "videos/x.mp4" and done.lease_owner is None
    events = [(e.status, e.detail) for e in await store.list_events(task.id)]
    assert events == [
        (Status.SUBMITTED, "created"),
        (Status.IN_PROGRESS, "attempt 1"),
        (Status.IN_PROGRESS, "progress"),  # the heartbeat's step to 55
        (Status.IN_PROGRESS, "attempt 2"),
        (Status.SUCCESS, None),
    ]


async def test_terminal_tasks_never_move(store: TaskStore) -> None:
    await store.create_task(make_task())
    task = await claim_one(
        store, worker="w1", now=2000.0, lease_seconds=LEASE, max_attempts=MAX_ATTEMPTS
    )
    assert task is not None
    failed = await store.finish_task(
        task.id,
        worker="w1",
        now=2001.0,
        status=Status.FAILED,
        error_code="content_rejected",
        error_message="no",
    )
    assert (failed.status, failed.error_code, failed.progress) == (
        Status.FAILED,
        "content_rejected",
        0,
    )
    for status in (Status.SUBMITTED, Status.IN_PROGRESS):
        with pytest.raises(IllegalTransition):
            await store.finish_task(task.id, worker="w1", now=2002.0, status=status)
    for status in (Status.SUCCESS, Status.ERROR):
        with pytest.raises(LeaseLost):
            await store.finish_task(task.id, worker="w1", now=2002.0, status=status)
    with pytest.raises(LeaseLost):
        await store.heartbeat(task.id, worker="w1", now=2003.0, lease_seconds=LEASE, progress=99)
    assert (
        await claim_one(
            store, worker="w2", now=9999.0, lease_seconds=LEASE, max_attempts=MAX_ATTEMPTS
        )
        is None
    )
    assert await store.get_task(task.id) == failed


async def test_retry_limit_ends_in_error(store: TaskStore) -> None:
    await store.create_task(make_task())
    now = 2000.0
    for attempt in range(1, MAX_ATTEMPTS + 1):
        task = await claim_one(
            store, worker=f"w{attempt}", now=now, lease_seconds=LEASE, max_attempts=MAX_ATTEMPTS
        )
        assert task is not None and task.attempts == attempt
        now += LEASE + 1
    assert (
        await claim_one(
            store, worker="late", now=now, lease_seconds=LEASE, max_attempts=MAX_ATTEMPTS
        )
        is None
    )
    expired = await store.expire_tasks(now=now, max_attempts=MAX_ATTEMPTS)
    assert [t.status for t in expired] == [Status.ERROR]
    assert expired[0].error_code == "worker_lost" and expired[0].completed_at == now
    assert "3 times" in (expired[0].error_message or "")
    assert await store.expire_tasks(now=now, max_attempts=MAX_ATTEMPTS) == []


async def test_keys(store: TaskStore) -> None:
    key = ApiKey("key_1", "alice", "laptop", "h" * 64, "rg_abcd", 1000.0)
    await store.add_key(key)
    assert await store.key_by_hash("h" * 64) == key
    assert await store.key_by_hash("nope") is None
    revoked = await store.revoke_key("key_1", now=2000.0)
    assert revoked.revoked_at == 2000.0 and not revoked.active
    assert (await store.revoke_key("key_1", now=3000.0)).revoked_at == 2000.0
    assert [k.id for k in await store.list_keys()] == ["key_1"]
    with pytest.raises(NotFound):
        await store.revoke_key("key_missing", now=1.0)


async def test_release_hands_the_task_back_at_once(store: TaskStore) -> None:
    await store.create_task(make_task())
    task = await claim_one(
        store, worker="w1", now=2000.0, lease_seconds=LEASE, max_attempts=MAX_ATTEMPTS
    )
    assert task is not None
    await store.heartbeat(task.id, worker="w1", now=2001.0, lease_seconds=LEASE, progress=30)
    with pytest.raises(LeaseLost):
        await store.release_task(task.id, worker="w2", now=2002.0)
    released = await store.release_task(task.id, worker="w1", now=2002.0)
    assert (released.status, released.progress, released.lease_owner) == (
        Status.IN_PROGRESS,
        30,
        None,
    )
    again = await claim_one(
        store, worker="w2", now=2003.0, lease_seconds=LEASE, max_attempts=MAX_ATTEMPTS
    )
    assert again is not None and again.id == task.id and again.attempts == 1
    with pytest.raises(LeaseLost):
        await store.heartbeat(task.id, worker="w1", now=2004.0, lease_seconds=LEASE, progress=50)


async def test_a_batch_claim_takes_the_oldest_up_to_its_limit(store: TaskStore) -> None:
    tasks = [make_task(1000.0 + i) for i in range(5)]
    for task in reversed(tasks):
        await store.create_task(task)
    kwargs = {"now": 2000.0, "lease_seconds": LEASE, "max_attempts": MAX_ATTEMPTS}
    first = await store.claim_tasks(worker="w1", limit=3, **kwargs)  # type: ignore[arg-type]
    assert [t.id for t in first] == [t.id for t in tasks[:3]]
    assert all(t.lease_owner == "w1" and t.attempts == 1 for t in first)
    rest = await store.claim_tasks(worker="w2", limit=10, **kwargs)  # type: ignore[arg-type]
    assert [t.id for t in rest] == [t.id for t in tasks[3:]]
    assert await store.claim_tasks(worker="w3", limit=10, **kwargs) == []  # type: ignore[arg-type]
    for task in tasks:
        details = [e.detail for e in await store.list_events(task.id)]
        assert details == ["created", "attempt 1"]
