"""The worker's answer to each fault, over the real stores (SQLite and PostgreSQL) and
real files: retried with backoff, charged to the right task, logged with the task id,
shown to clients without server detail; only exhausted retries end ERROR.

The faults come from renderers that raise what the preview renderer raises when its
process dies or its disk is full (the tests beside this one cause them for real); a
controllable clock steps over the backoff.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from reelgate.blobs.local import LocalBlobs
from reelgate.domain.catalog import Catalog
from reelgate.domain.errors import RenderError, RenderRejected, Unavailable
from reelgate.domain.status import Status
from reelgate.domain.task import Task
from reelgate.ports import ProgressFn, RenderJob, TaskStore
from reelgate.renderers import RENDER_CRASHED
from reelgate.services.signing import Signer
from reelgate.services.tasks import TaskService
from reelgate.store import open_store
from reelgate.worker.runner import Worker, WorkerConfig
from reelgate.worker.wakeup import LocalWakeup
from tests.fakes import TINY_MP4
from tests.pg import temporary_database, truncate

MODEL = "doubao-seedance-2-0"
SECRET = "/srv/secret/scratch/x.mp4"  # server detail that must never reach a client


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


class Faulty:
    """Raises ``faults`` one by one (one per render), then writes a tiny video."""

    name = "faulty"

    def __init__(self, *faults: Exception) -> None:
        self.faults = list(faults)
        self.renders = 0

    async def render(self, job: RenderJob, out_path: Path, progress: ProgressFn) -> None:
        self.renders += 1
        await progress(10)
        if self.faults:
            raise self.faults.pop(0)
        out_path.write_bytes(TINY_MP4)

    async def close(self) -> None:
        return None


def crashed() -> RenderError:
    error = RenderError("the preview render process died before it finished", code=RENDER_CRASHED)
    error.add_note("preview render process 4242: killed by signal 9")
    return error


def disk_full() -> Unavailable:
    return Unavailable(f"the preview renderer could not write {SECRET}: [Errno 28] No space")


@pytest.fixture(scope="module")
def pg_url() -> Iterator[str]:
    with temporary_database() as url:
        yield url


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[TaskStore]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'tasks.db'}"
    else:
        url = request.getfixturevalue("pg_url")
    opened = open_store(url)
    await opened.migrate()
    if request.param == "postgresql":
        truncate(url)
    yield opened
    await opened.close()


class Rig:
    def __init__(self, store: TaskStore, tmp_path: Path, renderer: Faulty, **config: object):
        self.store, self.clock, self.renderer = store, Clock(), renderer
        self.blobs = LocalBlobs(tmp_path / "blobs")
        self.tasks = TaskService(
            store,
            self.blobs,
            Catalog(),
            self.clock,
            Signer(b"k" * 32),
            public_url="http://x",
            url_ttl=60,
        )
        options: dict[str, object] = {
            "concurrency": 2,
            "scratch_dir": tmp_path / "scratch",
            "poll_interval": 0.05,
            "min_heartbeat_interval": 0.0,
            **config,
        }
        self.worker = Worker(
            store,
            self.blobs,
            {MODEL: renderer},
            self.clock,
            LocalWakeup(),
            WorkerConfig(**options),  # type: ignore[arg-type]
        )

    async def create(self) -> str:
        task = await self.tasks.create("alice", {"model": MODEL, "prompt": "a cat"})
        self.clock.now += 1
        return task.id

    async def task(self, task_id: str) -> Task:
        found = await self.store.get_task(task_id)
        assert found is not None
        return found

    async def burst_until_done(self, task_id: str, *, rounds: int) -> Task:
        """Bursts, stepping the clock over each backoff, until the task ends."""
        for _ in range(rounds):
            await self.worker.run_burst()
            task = await self.task(task_id)
            if task.terminal:
                return task
            assert task.lease_owner is None and task.lease_until is not None
            assert task.lease_until > self.clock.now, "put back without a backoff"
            self.clock.now = task.lease_until + 0.001
        raise AssertionError(f"task {task_id} did not end in {rounds} rounds")


async def test_a_dead_render_process_is_retried_and_charged(
    store: TaskStore, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "reelgate.worker")
    rig = Rig(store, tmp_path, Faulty(crashed()))
    task_id = await rig.create()
    await rig.worker.run_burst()
    waiting = await rig.task(task_id)
    assert (waiting.status, waiting.attempts, waiting.faults) == (Status.IN_PROGRESS, 1, 0)
    assert 0.8 <= waiting.lease_until - rig.clock.now <= 1.0  # type: ignore[operator]
    done = await rig.burst_until_done(task_id, rounds=2)
    assert (done.status, done.attempts, done.error_message) == (Status.SUCCESS, 2, None)
    details = [event.detail for event in await store.list_events(task_id)]
    assert "its render process died; retry in 1s" in details
    assert f"task {task_id}: its render process died" in caplog.text
    assert "killed by signal 9" in caplog.text  # the detail stays in the log


async def test_a_render_process_that_always_dies_ends_error_after_max_attempts(
    store: TaskStore, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    rig = Rig(store, tmp_path, Faulty(crashed(), crashed(), crashed()), max_attempts=3)
    task_id = await rig.create()
    done = await rig.burst_until_done(task_id, rounds=3)
    assert (done.status, done.error_code, done.attempts) == (Status.ERROR, RENDER_CRASHED, 3)
    assert done.error_message == "the render process died in attempt 3, the last allowed; giving up"
    assert f"task {task_id} ERROR ({RENDER_CRASHED})" in caplog.text


async def test_a_storage_fault_gives_the_attempt_back(
    store: TaskStore, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    rig = Rig(store, tmp_path, Faulty(disk_full(), OSError(28, "No space left", SECRET)))
    task_id = await rig.create()
    await rig.worker.run_burst()
    waiting = await rig.task(task_id)
    assert (waiting.status, waiting.attempts, waiting.faults) == (Status.IN_PROGRESS, 0, 1)
    done = await rig.burst_until_done(task_id, rounds=3)
    assert (done.status, done.attempts, done.faults) == (Status.SUCCESS, 1, 2)
    assert SECRET in caplog.text and "storage could not take writes" in caplog.text
    for event in await store.list_events(task_id):
        assert SECRET not in str(event.detail)


async def test_storage_faults_end_error_only_when_spent_with_a_clean_message(
    store: TaskStore, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    rig = Rig(store, tmp_path, Faulty(*(disk_full() for _ in range(3))), max_faults=3)
    task_id = await rig.create()
    done = await rig.burst_until_done(task_id, rounds=3)
    assert (done.status, done.error_code) == (Status.ERROR, "storage_unavailable")
    assert done.error_message == "storage failed 3 times in a row; giving up"
    assert f"task {task_id} ERROR (storage_unavailable)" in caplog.text


@pytest.mark.parametrize(
    ("fault", "status", "code", "message"),
    [
        (RenderRejected("the input was refused"), Status.FAILED, "content_rejected", None),
        (RenderError("the encoder failed"), Status.ERROR, "render_error", None),
        (
            RenderError(f"could not open {SECRET}: [Errno 5]"),
            Status.ERROR,
            "render_error",
            "the renderer failed",
        ),
        (
            RuntimeError(f"bug near {SECRET}"),
            Status.ERROR,
            "internal_error",
            "an internal error stopped the render",
        ),
    ],
)
async def test_other_failures_end_at_once_logged_and_clean(
    store: TaskStore,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    fault: Exception,
    status: Status,
    code: str,
    message: str | None,
) -> None:
    caplog.set_level(logging.INFO, "reelgate.worker")
    rig = Rig(store, tmp_path, Faulty(fault))
    task_id = await rig.create()
    await rig.worker.run_burst()
    done = await rig.task(task_id)
    expected = message or str(fault)
    assert (done.status, done.error_code, done.error_message) == (status, code, expected)
    assert done.attempts == 1
    assert f"task {task_id} {status} ({code})" in caplog.text
    if isinstance(fault, RuntimeError):
        assert SECRET in caplog.text  # the traceback, in the log only


async def wait_for(condition: object, what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not await condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


async def test_no_claims_while_storage_takes_no_writes_then_resumes(
    store: TaskStore, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "reelgate.worker")
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where the scratch folder's parent should be")
    rig = Rig(store, tmp_path, Faulty(), scratch_dir=blocker / "scratch")
    task_id = await rig.create()
    stop = asyncio.Event()
    running = asyncio.create_task(rig.worker.run(stop))
    try:

        async def refused() -> bool:
            return "storage cannot take writes" in caplog.text

        await wait_for(refused, "the worker to find storage unwritable")
        assert (await rig.task(task_id)).status is Status.SUBMITTED
        blocker.unlink()  # the folder can be made now

        async def done() -> bool:
            return (await rig.task(task_id)).status is Status.SUCCESS

        await wait_for(done, "the task to succeed once storage takes writes")
        assert "storage takes writes again" in caplog.text
    finally:
        stop.set()
        await asyncio.wait_for(running, 10)


async def test_no_claims_below_the_free_space_minimum(
    store: TaskStore, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    rig = Rig(store, tmp_path, Faulty(), min_free_bytes=2**62)
    task_id = await rig.create()
    stop = asyncio.Event()
    running = asyncio.create_task(rig.worker.run(stop))
    try:

        async def refused() -> bool:
            return "less than REELGATE_MIN_FREE_BYTES" in caplog.text

        await wait_for(refused, "the worker to find too little free space")
        assert (await rig.task(task_id)).status is Status.SUBMITTED
        assert rig.renderer.renders == 0
    finally:
        stop.set()
        await asyncio.wait_for(running, 10)
