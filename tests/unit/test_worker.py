"""The worker over the in-memory fakes of its ports."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from reelgate.blobs.memory import MemoryBlobs
from reelgate.domain.catalog import Catalog
from reelgate.domain.errors import Unavailable
from reelgate.domain.status import Status
from reelgate.services.signing import Signer
from reelgate.services.tasks import TaskService, output_key
from reelgate.store.memory import MemoryStore
from reelgate.worker.runner import Worker, WorkerConfig
from reelgate.worker.wakeup import LocalWakeup
from tests.fakes import ScriptedRenderer, claim_one

MODEL = "doubao-seedance-2-0"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Rig:
    def __init__(self, renderer: ScriptedRenderer, tmp_path: Path, **config: object) -> None:
        self.store = MemoryStore()
        self.blobs = MemoryBlobs()
        self.clock = FakeClock()
        self.renderer = renderer
        self.wakeup = LocalWakeup()
        self.tasks = TaskService(
            self.store,
            self.blobs,
            Catalog(),
            self.clock,
            Signer(b"k" * 32),
            public_url="http://x",
            url_ttl=60,
            wake=self.wakeup.notify,
        )
        options: dict[str, object] = {
            "concurrency": 2,
            "lease_seconds": 30.0,
            "scratch_dir": tmp_path,
            "min_heartbeat_interval": 0.0,
        }
        options.update(config)
        self.config = WorkerConfig(**options)  # type: ignore[arg-type]

    def worker(self) -> Worker:
        return Worker(
            self.store, self.blobs, {MODEL: self.renderer}, self.clock, self.wakeup, self.config
        )

    async def create(self, prompt: str = "a cat") -> str:
        task = await self.tasks.create("alice", {"model": MODEL, "prompt": prompt})
        self.clock.now += 1
        return task.id


async def test_burst_renders_everything(tmp_path: Path) -> None:
    rig = Rig(ScriptedRenderer(), tmp_path)
    ids = [await rig.create() for _ in range(5)]
    assert await rig.worker().run_burst() == 5
    for task_id in ids:
        task = await rig.store.get_task(task_id)
        assert task is not None
        assert (task.status, task.progress, task.output_key) == (
            Status.SUCCESS,
            100,
            output_key(task_id),
        )
        assert rig.blobs.blobs[output_key(task_id)].endswith(task_id.encode())
        events = await rig.store.list_events(task_id)
        changes = [e.status for e in events if e.detail != "progress"]
        assert changes == [Status.SUBMITTED, Status.IN_PROGRESS, Status.SUCCESS]
        steps = [e for e in events if e.detail == "progress"]  # heartbeats' 5% steps
        assert steps and all(e.status is Status.IN_PROGRESS for e in steps)
    assert list(tmp_path.iterdir()) == []  # scratch cleaned


@pytest.mark.parametrize(
    ("fail", "status", "code"),
    [
        ("rejected", Status.FAILED, "content_rejected"),
        ("error", Status.ERROR, "render_error"),
        ("crash", Status.ERROR, "internal_error"),
    ],
)
async def test_failures_end_the_task(fail: str, status: Status, code: str, tmp_path: Path) -> None:
    rig = Rig(ScriptedRenderer(fail=fail), tmp_path)
    task_id = await rig.create()
    await rig.worker().run_burst()
    task = await rig.store.get_task(task_id)
    assert task is not None
    assert (task.status, task.error_code) == (status, code)
    assert task.completed_at is not None and task.output_key is None
    assert 0 < task.progress < 100


async def test_a_lost_lease_abandons_the_render(tmp_path: Path) -> None:
    renderer = ScriptedRenderer(hold=True)
    rig = Rig(renderer, tmp_path, lease_seconds=0.3)
    task_id = await rig.create()
    worker = rig.worker()
    burst = asyncio.create_task(worker.run_burst())
    await asyncio.wait_for(renderer.running.wait(), 5)
    rig.clock.now += 100  # the lease expires; another worker takes the task over
    other = await claim_one(
        rig.store, worker="other", now=rig.clock.now, lease_seconds=30, max_attempts=3
    )
    assert other is not None and other.id == task_id and other.attempts == 2
    assert renderer.release is not None
    await asyncio.wait_for(burst, 5)  # the keeper's heartbeat found the lease gone
    task = await rig.store.get_task(task_id)
    assert task is not None and task.status is Status.IN_PROGRESS and task.lease_owner == "other"
    assert output_key(task_id) not in rig.blobs.blobs


async def test_expired_after_the_last_attempt_ends_in_error(tmp_path: Path) -> None:
    rig = Rig(ScriptedRenderer(), tmp_path, max_attempts=2)
    task_id = await rig.create()
    for worker in ("a", "b"):
        assert await claim_one(
            rig.store, worker=worker, now=rig.clock.now, lease_seconds=30, max_attempts=2
        )
        rig.clock.now += 31
    await rig.worker().run_burst()
    task = await rig.store.get_task(task_id)
    assert task is not None
    assert (task.status, task.error_code) == (Status.ERROR, "worker_lost")


async def test_run_wakes_on_new_work_and_stops(tmp_path: Path) -> None:
    rig = Rig(ScriptedRenderer(), tmp_path, poll_interval=60.0)
    stop = asyncio.Event()
    loop = asyncio.create_task(rig.worker().run(stop))
    await asyncio.sleep(0.05)
    task_id = await rig.create()  # notifies the wake-up; no 60 s poll needed
    for _ in range(200):
        task = await rig.store.get_task(task_id)
        if task is not None and task.status is Status.SUCCESS:
            break
        await asyncio.sleep(0.01)
    else:
        pytest.fail("the worker did not wake up")
    stop.set()
    rig.wakeup.notify()
    await asyncio.wait_for(loop, 5)


async def test_shutdown_hands_unfinished_renders_back(tmp_path: Path) -> None:
    renderer = ScriptedRenderer(hold=True)
    rig = Rig(renderer, tmp_path, grace_seconds=0.05, poll_interval=60.0)
    task_id = await rig.create()
    stop = asyncio.Event()
    loop = asyncio.create_task(rig.worker().run(stop))
    await asyncio.wait_for(renderer.running.wait(), 5)
    stop.set()
    await asyncio.wait_for(loop, 5)
    task = await rig.store.get_task(task_id)
    assert task is not None
    assert (task.status, task.lease_owner, task.attempts) == (Status.IN_PROGRESS, None, 0)
    assert task.progress > 0
    # another worker picks it up at once
    renderer.release = None
    await rig.worker().run_burst()
    done = await rig.store.get_task(task_id)
    assert done is not None and done.status is Status.SUCCESS and done.attempts == 1


async def test_a_retry_reuses_an_output_stored_before_the_crash(tmp_path: Path) -> None:
    renderer = ScriptedRenderer()
    rig = Rig(renderer, tmp_path)
    task_id = await rig.create()
    dead = await claim_one(
        rig.store, worker="dead", now=rig.clock.now, lease_seconds=30, max_attempts=3
    )
    assert dead is not None
    await rig.blobs.put_bytes(output_key(task_id, 1), b"rendered before the crash")
    rig.clock.now += 31
    await rig.worker().run_burst()
    task = await rig.store.get_task(task_id)
    assert task is not None and task.status is Status.SUCCESS and task.attempts == 2
    assert task.output_key == output_key(task_id, 1)
    assert renderer.started == [] and list(rig.blobs.blobs) == [output_key(task_id, 1)]


async def test_a_database_hiccup_during_progress_does_not_drop_the_render(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rig = Rig(ScriptedRenderer(steps=4), tmp_path)
    task_id = await rig.create()
    real = rig.store.heartbeat
    calls = 0

    async def flaky(*args: object, **kwargs: object) -> object:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise Unavailable("sqlite: database is locked")
        return await real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(rig.store, "heartbeat", flaky)
    await rig.worker().run_burst()
    task = await rig.store.get_task(task_id)
    assert task is not None and task.status is Status.SUCCESS and task.attempts == 1
