"""The events outbox of every TaskStore: cursors, progress steps, the global feed.

Streams (server-sent events, long-polls) read a task's events after a cursor; a
process's one reader learns from the feed (or NOTIFY on PostgreSQL) which tasks changed.
"""

from __future__ import annotations

import asyncio

import psycopg
import pytest

from reelgate.domain.progress import PROGRESS_STEP, progress_stepped
from reelgate.domain.status import Status
from reelgate.ports import TaskStore
from reelgate.store.postgres import PostgresEventListener, PostgresStore
from tests.fakes import claim_one, make_task
from tests.pg import truncate

LEASE = 30.0


async def _rendering(store: TaskStore) -> str:
    task = make_task()
    await store.create_task(task)
    claimed = await claim_one(store, worker="w", now=1001.0, lease_seconds=LEASE, max_attempts=3)
    assert claimed is not None and claimed.id == task.id
    return task.id


async def _beat(store: TaskStore, task_id: str, progress: int, now: float = 1002.0) -> None:
    await store.heartbeat(task_id, worker="w", now=now, lease_seconds=LEASE, progress=progress)


def test_progress_steps() -> None:
    assert PROGRESS_STEP == 5
    assert progress_stepped(0, 5) and progress_stepped(4, 5) and progress_stepped(9, 23)
    assert not progress_stepped(0, 4) and not progress_stepped(5, 9) and not progress_stepped(7, 7)


async def test_events_after_a_cursor_in_order(store: TaskStore) -> None:
    task_id = await _rendering(store)
    other = make_task()
    await store.create_task(other)
    events = await store.events_after(task_id, 0)
    assert [(e.status, e.detail) for e in events] == [
        (Status.SUBMITTED, "created"),
        (Status.IN_PROGRESS, "attempt 1"),
    ]
    assert events[0].seq < events[1].seq
    assert await store.events_after(task_id, events[0].seq) == events[1:]
    assert await store.events_after(task_id, events[-1].seq) == []
    assert await store.events_after(task_id, 0, limit=1) == events[:1]
    assert await store.events_after("task_missing", 0) == []
    assert await store.events_after("task_\x00bad", 0) == []  # text no store holds


async def test_heartbeats_record_a_progress_event_per_step(store: TaskStore) -> None:
    task_id = await _rendering(store)
    start = (await store.events_after(task_id, 0))[-1].seq
    for progress in (1, 3, 4, 4, 5, 6, 9, 12, 30, 30, 31):
        await _beat(store, task_id, progress)
    await _beat(store, task_id, 20)  # never lower: no event
    steps = await store.events_after(task_id, start)
    assert [(e.progress, e.detail, e.status) for e in steps] == [
        (5, "progress", Status.IN_PROGRESS),
        (12, "progress", Status.IN_PROGRESS),
        (30, "progress", Status.IN_PROGRESS),
    ]
    await store.finish_task(task_id, worker="w", now=1003.0, status=Status.SUCCESS)
    last = (await store.events_after(task_id, steps[-1].seq))[-1]
    assert (last.status, last.progress) == (Status.SUCCESS, 100)
    assert [e.seq for e in await store.list_events(task_id)] == sorted(
        e.seq for e in await store.list_events(task_id)
    )


async def test_the_feed_names_each_changed_task_after_a_cursor(store: TaskStore) -> None:
    before = await store.last_event()
    first, second = make_task(), make_task()
    await store.create_task(first)
    await store.create_task(second)
    feed = await store.event_feed(before)
    assert [task_id for _, task_id in feed] == [first.id, second.id]
    assert await store.last_event() == feed[-1][0]
    assert await store.event_feed(feed[-1][0]) == []
    assert await store.event_feed(before, limit=1) == feed[:1]
    assert await store.event_feed(feed[0][0]) == feed[1:]


async def test_events_go_with_their_task_and_seqs_are_not_reused(store: TaskStore) -> None:
    task = make_task()
    await store.create_task(task)
    seq = (await store.events_after(task.id, 0))[0].seq
    later = make_task()
    await store.create_task(later)
    assert (await store.events_after(later.id, 0))[0].seq > seq


@pytest.mark.postgres
async def test_postgresql_notifies_each_event_to_listeners(pg_url: str) -> None:
    store = PostgresStore(pg_url)
    await store.migrate()
    truncate(pg_url)  # the module's other tests left claimable tasks
    heard: list[str | None] = []
    got = asyncio.Event()

    def changed(task_id: str | None) -> None:
        heard.append(task_id)
        got.set()

    listening = asyncio.create_task(PostgresEventListener(pg_url).run(changed))
    try:
        async with asyncio.timeout(10):
            await got.wait()  # connected: it says any task may have changed
        assert heard == [None]
        task_id = await _rendering(store)
        async with asyncio.timeout(10):
            while heard.count(task_id) < 2:  # created, claimed
                got.clear()
                await got.wait()
        # Any statement that records an event notifies, through the trigger.
        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute(
                "INSERT INTO task_events (task_id, at, status, progress, detail) "
                "VALUES (%s, 1.0, 'IN_PROGRESS', 7, 'by hand')",
                (task_id,),
            )
        async with asyncio.timeout(10):
            while heard.count(task_id) < 3:
                got.clear()
                await got.wait()
    finally:
        listening.cancel()
        with pytest.raises(asyncio.CancelledError):
            await listening
        await store.close()
