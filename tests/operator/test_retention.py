"""Retention: the janitor on SQLite and PostgreSQL, the API after expiry, ``reelgate gc``."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from pathlib import Path

import httpx
import psycopg
import pytest
from typer.testing import CliRunner

from reelgate.api.videos import encode, video_body, video_json
from reelgate.blobs.local import LocalBlobs
from reelgate.cli import app
from reelgate.domain.retention import FileKind, Retention, StorageUsage, parse_duration
from reelgate.domain.status import Phase, Status
from reelgate.domain.task import Task
from reelgate.ports import BlobStore, TaskStore
from reelgate.services.retention import Janitor, files_of
from reelgate.services.tasks import output_key, thumbnail_key
from reelgate.store import open_store, sql
from reelgate.store import retention as q
from tests.fakes import make_task
from tests.pg import temporary_database, truncate
from tests.server import LiveServer, start_server

DAY = 86400.0
MODEL = "doubao-seedance-1-0-pro"
NOW = 100 * DAY  # the janitors' clock: tasks finished at 1 * DAY are 99 days old


@pytest.fixture(scope="module")
def pg_url() -> Iterator[str]:
    with temporary_database() as url:
        yield url


@pytest.fixture(params=["memory", "sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh database of each kind (several store objects may open it: processes)."""
    if request.param == "memory":
        return "memory:"
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'tasks.db'}"
    pg: str = request.getfixturevalue("pg_url")
    store = open_store(pg)
    asyncio.run(_migrate(store))
    truncate(pg)
    return pg


async def _migrate(store: TaskStore) -> None:
    await store.migrate()
    await store.close()


@pytest.fixture
async def store(url: str) -> AsyncIterator[TaskStore]:
    s = open_store(url)
    await s.migrate()
    yield s
    await s.close()


class CountingBlobs(LocalBlobs):
    """Local files that count each delete of a key that existed (shared by janitors)."""

    def __init__(
        self, root: Path, deleted: list[str], *, broken: bool = False, after: int | None = None
    ) -> None:
        super().__init__(root)
        self.deleted = deleted
        self.broken = broken
        self.after = after  # deletes that work before the storage breaks (None: never)

    async def delete(self, key: str) -> None:
        if self.broken:
            raise OSError("the disk is away")
        if self.after is not None:
            if self.after == 0:
                raise OSError("the disk went away")
            self.after -= 1
        if await self.exists(key):
            self.deleted.append(key)
        await super().delete(key)


async def finished(
    store: TaskStore,
    blobs: BlobStore,
    *,
    at: float,
    image: bool = False,
    status: Status = Status.SUCCESS,
) -> Task:
    """A task rendered and finished at ``at``, its files stored with recorded sizes."""
    task = make_task(at - 60)
    if image:
        input_key = f"inputs/{task.id}.png"
        task = replace(task, spec=replace(task.spec, input_key=input_key), input_bytes=3)
        await blobs.put_bytes(input_key, b"png")
    await store.create_task(task)
    claimed = await store.claim_tasks(
        worker="w", now=at - 30, lease_seconds=600, max_attempts=3, limit=100
    )
    assert task.id in {t.id for t in claimed}
    key = None
    if status is Status.SUCCESS:
        key = output_key(task.id, 1)
        await blobs.put_bytes(thumbnail_key(task.id, 1), b"jpeg")
        await blobs.put_bytes(key, b"mp4 " * 25)
    return await store.finish_task(
        task.id,
        worker="w",
        now=at,
        status=status,
        output_key=key,
        output_bytes=104 if key else None,
    )


def janitor(store: TaskStore, blobs: BlobStore, **retention: float) -> Janitor:
    return Janitor(store, blobs, lambda: NOW, Retention(**retention), batch=3)


async def test_expires_old_outputs_in_batches_and_keeps_the_rest(
    store: TaskStore, tmp_path: Path
) -> None:
    deleted: list[str] = []
    blobs = CountingBlobs(tmp_path / "blobs", deleted)
    old = [await finished(store, blobs, at=DAY + i) for i in range(7)]
    recent = await finished(store, blobs, at=NOW - 3600)
    failed = await finished(store, blobs, at=DAY, status=Status.FAILED)
    assert await store.storage_usage() == StorageUsage(videos=8, video_bytes=8 * 104)

    sweep = await janitor(store, blobs, outputs=30 * DAY).sweep()

    assert sweep.ran and sweep.kinds[FileKind.OUTPUTS].tasks == 8  # 7 videos, 1 failed task
    assert sweep.kinds[FileKind.OUTPUTS].bytes == 7 * 104
    for task in old:
        stored = await store.get_task(task.id)
        assert stored is not None and stored.files_expired_at == NOW
        assert stored.status is Status.SUCCESS and stored.output_key == task.output_key
        assert not await blobs.exists(output_key(task.id, 1))
        assert not await blobs.exists(thumbnail_key(task.id, 1))
    assert sorted(deleted) == sorted(files_of(t, FileKind.OUTPUTS)[i] for t in old for i in (0, 1))
    kept = await store.get_task(recent.id)
    assert kept is not None and kept.files_expired_at is None
    assert await blobs.exists(output_key(recent.id, 1))
    gone = await store.get_task(failed.id)
    assert gone is not None and gone.files_expired_at == NOW
    assert await store.storage_usage() == StorageUsage(videos=1, video_bytes=104)
    again = await janitor(store, blobs, outputs=30 * DAY).sweep()
    assert again.kinds[FileKind.OUTPUTS].tasks == 0


async def test_inputs_expire_on_their_own_and_never_while_the_task_runs(
    store: TaskStore, tmp_path: Path
) -> None:
    blobs = CountingBlobs(tmp_path / "blobs", [])
    done = await finished(store, blobs, at=DAY, image=True)
    running = replace(make_task(DAY), input_bytes=3)
    running = replace(running, spec=replace(running.spec, input_key=f"inputs/{running.id}.png"))
    await blobs.put_bytes(f"inputs/{running.id}.png", b"png")
    await store.create_task(running)
    claimed = await store.claim_tasks(worker="w", now=DAY, lease_seconds=1e9, max_attempts=3)
    assert [t.id for t in claimed] == [running.id]
    queued = replace(make_task(DAY), input_bytes=3)
    queued = replace(queued, spec=replace(queued.spec, input_key=f"inputs/{queued.id}.png"))
    await blobs.put_bytes(f"inputs/{queued.id}.png", b"png")
    await store.create_task(queued)
    assert await store.storage_usage() == StorageUsage(1, 104, 3, 9)

    sweep = await janitor(store, blobs, inputs=DAY).sweep()

    assert FileKind.OUTPUTS not in sweep.kinds  # outputs are kept for ever here
    assert sweep.kinds[FileKind.INPUTS].tasks == 1 and sweep.kinds[FileKind.INPUTS].bytes == 3
    expired = await store.get_task(done.id)
    assert expired is not None and expired.input_expired_at == NOW
    assert expired.files_expired_at is None and await blobs.exists(output_key(done.id, 1))
    assert not await blobs.exists(f"inputs/{done.id}.png")
    for task in (running, queued):  # a running or queued task keeps its input, however old
        stored = await store.get_task(task.id)
        assert stored is not None and stored.input_expired_at is None
        assert stored.phase is not Phase.DONE
        assert await blobs.exists(f"inputs/{task.id}.png")
    assert await store.storage_usage() == StorageUsage(1, 104, 2, 6)


async def test_two_janitors_at_once_never_delete_twice(url: str, tmp_path: Path) -> None:
    """Janitors of two processes (two stores, two blob stores on one folder) race."""
    if url == "memory:":
        pytest.skip("a memory store is one process's")
    deleted: list[str] = []
    first, second = open_store(url), open_store(url)
    await first.migrate()
    try:
        blobs = CountingBlobs(tmp_path / "blobs", deleted)
        tasks = [await finished(first, blobs, at=DAY + i, image=True) for i in range(20)]
        other = CountingBlobs(tmp_path / "blobs", deleted)
        retention = {"outputs": DAY, "inputs": DAY}
        sweeps = await asyncio.gather(
            *(
                janitor(store, store_blobs, **retention).sweep()
                for _ in range(3)
                for store, store_blobs in ((first, blobs), (second, other))
            )
        )
        swept = sum(s.kinds[FileKind.OUTPUTS].tasks for s in sweeps if s.ran)
        assert swept == 20
        assert sum(s.kinds[FileKind.INPUTS].tasks for s in sweeps if s.ran) == 20
        assert len(deleted) == len(set(deleted)) == 20 * 3  # video, thumbnail, input: once each
        for task in tasks:
            stored = await second.get_task(task.id)
            assert stored is not None and stored.files_expired_at == NOW
            assert stored.input_expired_at == NOW
    finally:
        await first.close()
        await second.close()


async def test_a_janitor_without_the_lease_marks_nothing(store: TaskStore, tmp_path: Path) -> None:
    blobs = CountingBlobs(tmp_path / "blobs", [])
    task = await finished(store, blobs, at=DAY)
    assert await store.take_lease(q.LEASE, "someone", now=NOW, until=NOW + 60)
    sweep = await janitor(store, blobs, outputs=DAY).sweep()
    assert not sweep.ran
    marked = await store.expire_files(
        FileKind.OUTPUTS, before=NOW, now=NOW, limit=10, holder="not-the-holder"
    )
    assert marked == []
    stored = await store.get_task(task.id)
    assert stored is not None and stored.files_expired_at is None
    assert not await store.take_lease(q.LEASE, "another", now=NOW + 59, until=NOW + 120)
    assert await store.take_lease(q.LEASE, "another", now=NOW + 61, until=NOW + 120)  # expired


async def test_files_that_cannot_be_deleted_stay_for_the_next_run(
    store: TaskStore, tmp_path: Path
) -> None:
    blobs = CountingBlobs(tmp_path / "blobs", [])
    task = await finished(store, blobs, at=DAY)
    broken = CountingBlobs(tmp_path / "blobs", [], broken=True)
    sweep = await janitor(store, broken, outputs=DAY).sweep()
    assert sweep.kinds[FileKind.OUTPUTS].failed == 1 and sweep.kinds[FileKind.OUTPUTS].tasks == 0
    stored = await store.get_task(task.id)
    assert stored is not None and stored.files_expired_at is None
    assert await blobs.exists(output_key(task.id, 1))
    assert (await janitor(store, blobs, outputs=DAY).sweep()).kinds[FileKind.OUTPUTS].tasks == 1


async def test_a_sweep_that_fails_halfway_keeps_the_linked_video(
    store: TaskStore, tmp_path: Path
) -> None:
    blobs = CountingBlobs(tmp_path / "blobs", [])
    task = await finished(store, blobs, at=DAY)
    halfway = CountingBlobs(tmp_path / "blobs", [], after=1)  # the thumbnail, then no more
    sweep = await janitor(store, halfway, outputs=DAY).sweep()
    assert sweep.kinds[FileKind.OUTPUTS].failed == 1
    stored = await store.get_task(task.id)
    assert stored is not None and stored.files_expired_at is None  # its link is shown again
    assert await blobs.exists(output_key(task.id, 1))  # and still reaches the video


async def test_dry_run_counts_and_changes_nothing(store: TaskStore, tmp_path: Path) -> None:
    blobs = CountingBlobs(tmp_path / "blobs", [])
    tasks = [await finished(store, blobs, at=DAY, image=True) for _ in range(4)]
    await finished(store, blobs, at=NOW)
    sweep = await janitor(store, blobs, outputs=DAY, inputs=DAY).sweep(dry_run=True)
    assert sweep.dry_run
    assert (sweep.kinds[FileKind.OUTPUTS].tasks, sweep.kinds[FileKind.OUTPUTS].bytes) == (4, 416)
    assert (sweep.kinds[FileKind.INPUTS].tasks, sweep.kinds[FileKind.INPUTS].bytes) == (4, 12)
    for task in tasks:
        assert await blobs.exists(output_key(task.id, 1))
        stored = await store.get_task(task.id)
        assert stored is not None and stored.files_expired_at is None


def test_the_janitor_and_usage_read_their_indexes_on_sqlite(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'plan.db'}")
    asyncio.run(_migrate(store))
    with sqlite3.connect(tmp_path / "plan.db") as conn:
        for kind, index in ((FileKind.OUTPUTS, "outputs"), (FileKind.INPUTS, "inputs")):
            statement = q.expire_statement(kind, chosen="id IN ({pick})")
            params = {"before": 1.0, "now": 1.0, "limit": 1, "lease": "x", "holder": "x"}
            plan = " ".join(
                str(row) for row in conn.execute("EXPLAIN QUERY PLAN " + statement, params)
            )
            assert f"tasks_{index}_kept" in plan
            usage = " ".join(
                str(row) for row in conn.execute("EXPLAIN QUERY PLAN " + q.USAGE[kind])
            )
            assert f"COVERING INDEX tasks_{index}_kept" in usage


@pytest.mark.postgres
def test_the_janitor_and_usage_can_read_their_indexes_on_postgresql(pg_url: str) -> None:
    """The planner may use each index (with few rows it scans the table instead)."""
    store = open_store(pg_url)
    asyncio.run(_migrate(store))
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("SET enable_seqscan = off")
        for kind, index in ((FileKind.OUTPUTS, "outputs"), (FileKind.INPUTS, "inputs")):
            usage = [row[0] for row in conn.execute("EXPLAIN " + q.USAGE[kind])]
            assert any(f"Index Only Scan using tasks_{index}_kept" in line for line in usage)
            statement = sql.for_psycopg(
                q.expire_statement(kind, chosen="id = ANY(ARRAY({pick}))", lock=" FOR UPDATE")
            )
            params = {"before": 1.0, "now": 1.0, "limit": 1, "lease": "x", "holder": "x"}
            plan = [row[0] for row in conn.execute("EXPLAIN " + statement, params)]
            assert any(f"using tasks_{index}_kept" in line for line in plan), plan


def test_durations() -> None:
    assert parse_duration("30d") == 30 * DAY
    assert parse_duration("1w 2d") == 9 * DAY
    assert parse_duration("90m") == 5400
    assert parse_duration("") is None and parse_duration("off") is None
    for bad in ("30", "d", "3x", "-1d", "1d junk"):
        with pytest.raises(ValueError, match="duration"):
            parse_duration(bad)


# The API after expiry ---------------------------------------------------------------


@pytest.fixture(scope="module")
def retaining(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A server that keeps outputs 30 days (its own janitor sweeps every 5 minutes)."""
    server = start_server(
        tmp_path_factory.mktemp("retention"), renderer="instant", retain_outputs="30d"
    )
    yield server
    server.stop()


def _wait_success(client: httpx.Client, task_id: str) -> dict[str, object]:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        body: dict[str, object] = client.get(f"/v1/videos/{task_id}").json()
        if body["status"] in ("SUCCESS", "FAILED", "ERROR"):
            return body
        client.get(f"/v1/videos/{task_id}", params={"wait": "5"})  # answers on a change
    raise AssertionError(f"task {task_id} did not finish")


def test_retrieve_openai_ark_and_content_after_expiry(retaining: LiveServer) -> None:
    c = retaining.components
    with httpx.Client(base_url=retaining.base_url, headers=retaining.headers()) as client:
        fields = {"prompt": "a cat", "model": MODEL, "seconds": "2", "resolution": "480p"}
        created = client.post("/v1/videos", data=fields)
        assert created.status_code == 200, created.text
        task_id = created.json()["id"]
        body = _wait_success(client, task_id)
        assert body["status"] == "SUCCESS" and "video_url" in body
        assert "files_expired_at" not in body
        task = retaining.call(c.store.get_task(task_id))
        assert task is not None and task.completed_at is not None
        assert task.output_bytes is not None and task.output_bytes > 1000  # video + thumbnail
        usage = retaining.call(c.store.storage_usage())
        assert usage.videos >= 1 and usage.video_bytes >= task.output_bytes
        openai = client.get(f"/openai/v1/videos/{task_id}").json()
        assert openai["expires_at"] == int(task.completed_at + 30 * DAY)
        assert client.get(f"/v1/videos/{task_id}/content").status_code == 200

        later = task.completed_at + 31 * DAY
        sweeper = Janitor(c.store, c.blobs, lambda: later, c.settings.retention)
        sweep = retaining.call(sweeper.sweep())
        assert sweep.kinds[FileKind.OUTPUTS].tasks >= 1

        body = client.get(f"/v1/videos/{task_id}").json()  # the fast path (Retrieve)
        assert body["status"] == "SUCCESS" and body["progress"] == 100
        assert "video_url" not in body and "expires_at" not in body
        assert body["files_expired_at"] == int(later)
        listed = client.get("/v1/videos", params={"limit": 100}).json()["data"]
        assert next(item for item in listed if item["id"] == task_id) == body
        expired = retaining.call(c.store.get_task(task_id))
        assert expired is not None
        assert video_json(expired, c.tasks) == encode(video_body(expired, c.tasks))

        openai = client.get(f"/openai/v1/videos/{task_id}").json()
        assert openai["status"] == "completed" and openai["expires_at"] == int(later)
        ark = client.get(f"/api/v3/contents/generations/tasks/{task_id}").json()
        assert ark["status"] == "succeeded" and "content" not in ark and "usage" in ark

        for path in (f"/v1/videos/{task_id}/content", f"/openai/v1/videos/{task_id}/content"):
            answer = client.get(path, params={"variant": "thumbnail"})
            assert answer.status_code == 410, answer.text
            assert answer.json()["error"]["code"] == "files_expired"
            assert "retention" in answer.json()["error"]["message"]

        assert client.delete(f"/v1/videos/{task_id}").status_code == 200  # still deletable


def test_the_janitor_of_the_embedded_worker_expires_videos(tmp_path: Path) -> None:
    """A server with a short retention: its own janitor deletes the video, unprompted."""
    server = start_server(tmp_path, renderer="instant", retain_outputs="1s", retention_interval=0.2)
    try:
        with httpx.Client(base_url=server.base_url, headers=server.headers()) as client:
            fields = {"prompt": "a cat", "model": MODEL, "seconds": "2", "resolution": "480p"}
            task_id = client.post("/v1/videos", data=fields).json()["id"]
            assert _wait_success(client, task_id)["status"] == "SUCCESS"
            deadline = time.monotonic() + 30
            body: dict[str, object] = {}
            while time.monotonic() < deadline and "files_expired_at" not in body:
                body = client.get(f"/v1/videos/{task_id}").json()
                time.sleep(0.05)  # the poll's pace; the deadline bounds the wait
            assert "files_expired_at" in body and "video_url" not in body, body
            assert client.get(f"/v1/videos/{task_id}/content").status_code == 410
            blobs = server.components.blobs
            assert not server.call(blobs.exists(output_key(task_id, 1)))
    finally:
        server.stop()


# reelgate gc ---------------------------------------------------------------------------


def test_gc_dry_run_then_for_real(tmp_path: Path) -> None:
    data = tmp_path / "data"
    database = f"sqlite:///{data / 'reelgate.db'}"

    async def prepare() -> list[Task]:
        store = open_store(database)
        await store.migrate()
        blobs = LocalBlobs(data / "blobs")
        try:
            return [await finished(store, blobs, at=DAY) for _ in range(3)]
        finally:
            await store.close()

    tasks = asyncio.run(prepare())
    runner = CliRunner()
    args = ["gc", "--data-dir", str(data), "--retain-outputs", "30d"]

    dry = runner.invoke(app, [*args, "--dry-run"], catch_exceptions=False)
    assert dry.exit_code == 0, dry.output
    assert "outputs: would delete the files of 3 tasks, 312 bytes" in dry.output
    assert all((data / "blobs" / output_key(t.id, 1)).is_file() for t in tasks)

    real = runner.invoke(app, args, catch_exceptions=False)
    assert real.exit_code == 0, real.output
    assert "outputs: deleted the files of 3 tasks, 312 bytes" in real.output
    assert not any((data / "blobs" / output_key(t.id, 1)).exists() for t in tasks)

    off = runner.invoke(app, ["gc", "--data-dir", str(data)], catch_exceptions=False)
    assert off.exit_code == 0 and "nothing to do" in off.output
    bad = runner.invoke(app, [*args[:3], "--retain-outputs", "30"])
    assert bad.exit_code == 2 and "duration" in bad.output
