"""Cancellation inside one process, over the in-memory fakes: the service, the render
worker, the submitter racing a cancel, the watcher, and the cancel log reader."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from reelgate.domain.errors import TaskNotCancellable, TaskNotFound
from reelgate.domain.status import Phase, Status
from reelgate.domain.task import Task
from reelgate.ports import UpstreamJob
from reelgate.services.tasks import output_key, thumbnail_key
from reelgate.store.memory import MemoryStore
from reelgate.worker.cancels import Cancels
from tests.fakes import ScriptedRenderer, make_task
from tests.unit.test_remote_worker import Rig as RemoteRig
from tests.unit.test_remote_worker import ScriptedProvider
from tests.unit.test_worker import MODEL
from tests.unit.test_worker import Rig as LocalRig


class GatedProvider(ScriptedProvider):
    """Answers a submit only once ``gate`` is set; records the cancels it is asked for."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.gate = asyncio.Event()
        self.submitting = asyncio.Event()
        self.cancelled: list[str] = []

    async def submit(self, job: UpstreamJob) -> str:
        self.submitting.set()
        await self.gate.wait()
        return await super().submit(job)

    async def cancel(self, upstream_id: str) -> None:
        self.cancelled.append(upstream_id)


async def _until(check: Callable[[], object], what: str) -> None:
    """Wait on a real condition, with a deadline."""
    deadline = time.monotonic() + 5
    while True:
        if check():
            return
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


async def test_the_service_cancels_once_and_refuses_finished_tasks(tmp_path: Path) -> None:
    notices: list[str] = []
    rig = LocalRig(ScriptedRenderer(), tmp_path)
    rig.tasks._on_cancel = notices.append
    task = await rig.tasks.create("alice", {"prompt": "a", "model": MODEL})
    cancelled = await rig.tasks.cancel("alice", task.id)
    assert cancelled.cancelled and cancelled.status is Status.FAILED and notices == [task.id]
    assert await rig.tasks.cancel("alice", task.id) == cancelled  # a retry: as it is
    assert notices == [task.id]
    with pytest.raises(TaskNotFound):
        await rig.tasks.cancel("bob", task.id)
    done = await rig.tasks.create("alice", {"prompt": "b", "model": MODEL})
    await rig.worker().run_burst()
    assert (await rig.tasks.get("alice", done.id)).status is Status.SUCCESS
    with pytest.raises(TaskNotCancellable):
        await rig.tasks.cancel("alice", done.id)
    with pytest.raises(TaskNotFound):
        await rig.tasks.delete("bob", done.id)
    assert await rig.blobs.exists(output_key(done.id, 1))
    await rig.blobs.put_bytes(thumbnail_key(done.id, 1), b"jpeg")
    await rig.tasks.delete("alice", done.id)
    assert not rig.blobs.blobs
    with pytest.raises(TaskNotFound):
        await rig.tasks.get("alice", done.id)


async def test_a_cancelled_render_stops_at_once_and_is_not_handed_back(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    renderer = ScriptedRenderer(hold=True)
    rig = LocalRig(renderer, tmp_path)
    worker = rig.worker()
    rig.tasks._on_cancel = worker.cancel
    task = await rig.tasks.create("alice", {"prompt": "a", "model": MODEL})
    stop = asyncio.Event()
    running = asyncio.create_task(worker.run(stop))
    await asyncio.wait_for(renderer.running.wait(), 5)
    with caplog.at_level(logging.INFO, logger="reelgate.worker"):
        await rig.tasks.cancel("alice", task.id)
        await _until(lambda: not worker._jobs, "the render to stop")
    stop.set()
    await running
    stored = await rig.store.get_task(task.id)
    assert stored is not None and stored.cancelled
    assert f"task {task.id} cancelled; its render stopped" in caplog.text
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert not list(tmp_path.iterdir())  # no scratch file left


async def test_a_missed_notice_still_stops_the_render_quietly(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    renderer = ScriptedRenderer(hold=True)
    rig = LocalRig(renderer, tmp_path, lease_seconds=0.3)  # beats every 0.1 s
    worker = rig.worker()
    task = await rig.tasks.create("alice", {"prompt": "a", "model": MODEL})
    stop = asyncio.Event()
    running = asyncio.create_task(worker.run(stop))
    await asyncio.wait_for(renderer.running.wait(), 5)
    with caplog.at_level(logging.INFO, logger="reelgate.worker"):
        await rig.store.cancel_task(task.id, now=rig.clock.now)  # as another process would
        await _until(lambda: not worker._jobs, "the render to stop")
    stop.set()
    await running
    assert f"task {task.id} was cancelled; its render stopped" in caplog.text
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


async def test_a_submission_that_raced_a_cancel_is_cancelled_upstream(tmp_path: Path) -> None:
    rig = RemoteRig(tmp_path)
    gated = GatedProvider("a")
    rig.submitter._providers = {"a": gated, "b": rig.b}
    gated.queue("submit", "up-9")
    task = make_task(rig.clock.now)
    await rig.store.create_task(task)
    claimed = await rig.submitter.claim(1)
    submitting = asyncio.create_task(rig.submitter.submit(claimed[0]))
    await asyncio.wait_for(gated.submitting.wait(), 5)
    await rig.store.cancel_task(task.id, now=rig.clock.now)
    gated.gate.set()
    await submitting
    assert gated.cancelled == ["up-9"]
    assert (await rig.get(task.id)).cancelled and rig.accepted == []


async def test_the_watcher_stops_a_cancelled_task_once(tmp_path: Path) -> None:
    rig = RemoteRig(tmp_path)
    gated = GatedProvider("a")
    rig.watcher._providers = {"a": gated, "b": rig.b}
    task: Task = await rig.watching()
    rig.watcher.hold(task)
    assert rig.watcher.held == 1
    await rig.store.cancel_task(task.id, now=rig.clock.now)
    rig.watcher.cancel(task.id)
    rig.watcher.cancel(task.id)
    await _until(lambda: gated.cancelled, "the upstream cancel")
    assert gated.cancelled == ["up-1"] and rig.watcher.held == 0
    rig.watcher.hold(task)  # handed over after its cancel (a race): stopped, not watched
    assert rig.watcher.held == 0


async def test_the_log_reader_tells_each_subscriber_once() -> None:
    store = MemoryStore()
    now = [5000.0]
    cancels = Cancels(store, lambda: now[0], interval=0.01)
    seen: list[str] = []
    cancels.subscribe(seen.append)
    tasks = [make_task(4000.0 + i) for i in range(3)]
    for task in tasks:
        await store.create_task(task)
    cancels.notify(tasks[0].id)  # in this process: at once
    await store.cancel_task(tasks[0].id, now=5000.0)
    await store.cancel_task(tasks[1].id, now=5001.0)  # in another process
    reading = asyncio.create_task(cancels.run())
    await _until(lambda: len(seen) == 2, "the log read")
    await asyncio.sleep(0.05)
    reading.cancel()
    assert seen == [tasks[0].id, tasks[1].id]
    assert (await store.get_task(tasks[2].id)) == tasks[2]
    assert Phase.DONE is (await store.get_task(tasks[1].id)).phase  # type: ignore[union-attr]
