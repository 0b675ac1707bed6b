"""The event hub: one reader per process wakes only the waiters of the tasks that changed."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest

from reelgate.domain.errors import InvalidParameter
from reelgate.domain.task import Event
from reelgate.services.events import EventHub, parse_cursor, parse_wait
from reelgate.store.memory import MemoryStore
from tests.fakes import claim_one, make_task


class CountingStore(MemoryStore):
    """The fake store, counting the reads of a task's events."""

    def __init__(self) -> None:
        super().__init__()
        self.reads: dict[str, int] = {}

    async def events_after(self, task_id: str, after: int, *, limit: int = 100) -> list[Event]:
        self.reads[task_id] = self.reads.get(task_id, 0) + 1
        return await super().events_after(task_id, after, limit=limit)


@contextlib.asynccontextmanager
async def running(hub: EventHub) -> AsyncIterator[EventHub]:
    reader = asyncio.create_task(hub.run())
    try:
        yield hub
    finally:
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader


async def test_a_change_wakes_only_its_task_waiters() -> None:
    store = CountingStore()
    tasks = [make_task(1000.0 + i) for i in range(50)]
    for task in tasks:
        await store.create_task(task)
    async with running(EventHub(store, poll_interval=0.01)) as hub:
        cursors = {t.id: (await store.events_after(t.id, 0))[-1].seq for t in tasks}
        waits = {t.id: asyncio.create_task(hub.wait(t.id, cursors[t.id], 30)) for t in tasks}
        await asyncio.sleep(0.1)  # the reader's first tick woke everyone once: settled
        assert hub.waiting == len(tasks)
        before = dict(store.reads)
        claimed = await claim_one(store, worker="w", now=2000.0, lease_seconds=30, max_attempts=3)
        assert claimed is not None and claimed.id == tasks[0].id
        async with asyncio.timeout(5):
            events = await waits[claimed.id]
        assert [e.detail for e in events] == ["attempt 1"]
        await asyncio.sleep(0.1)  # several reader ticks: nobody else woke up
        assert all(not waits[t.id].done() for t in tasks[1:])
        woken = {task_id for task_id, n in store.reads.items() if n != before.get(task_id)}
        assert woken == {claimed.id}
        assert hub.waiting == len(tasks) - 1
        for wait in waits.values():
            wait.cancel()
        await asyncio.gather(*waits.values(), return_exceptions=True)
        assert hub.waiting == 0


async def test_a_wait_times_out_empty_and_reads_once_more() -> None:
    store = CountingStore()
    task = make_task()
    await store.create_task(task)
    hub = EventHub(store, poll_interval=3600)  # no reader: only the timeout's read
    seq = (await store.events_after(task.id, 0))[-1].seq
    assert await hub.wait(task.id, seq, 0.05) == []
    assert store.reads[task.id] == 3  # above, before the wait, after it
    assert [e.seq for e in await hub.wait(task.id, 0, 0)] == [seq]
    assert await hub.last_seq(task.id) == seq
    assert await hub.last_seq("task_missing") == 0


def test_wait_and_cursor_parsing() -> None:
    assert parse_wait("1") == 1.0 and parse_wait("60") == 60.0 and parse_wait("0.5") == 0.5
    for bad in ("0", "-1", "60.01", "nan", "inf", "", "x", "1e3"):
        with pytest.raises(InvalidParameter) as caught:
            parse_wait(bad)
        assert caught.value.param == "wait"
    assert parse_cursor("0") == 0 and parse_cursor("123") == 123
    for bad in ("-1", "1.5", "x", "١٢", "9" * 19):
        with pytest.raises(InvalidParameter):
            parse_cursor(bad)
