"""Scale-out: separate API and worker processes on PostgreSQL (and S3), under faults.

- kill -9 one of three worker processes in the middle of a few hundred tasks:
  every task still succeeds, rendered to completion once (one object version
  per output key in a versioned bucket), progress never goes down, and the
  dead worker's tasks are claimed again;
- stop PostgreSQL under load: the API answers 503 ``service_unavailable`` in
  the envelope (quickly), ``/readyz`` 503 and ``/healthz`` 200; once it is
  back, every acknowledged task succeeds and new creates work;
- SIGTERM a worker with a long render: it exits within its grace time and
  hands the lease back, and another worker takes the task at once; also when
  the signal reaches the preview renderer's child processes too, as
  ``systemctl stop`` sends it.

The outage test stops a private PostgreSQL server (``tests/pgserver.py``), not
the machine's shared one, which concurrent test runs may be using.
"""

from __future__ import annotations

import collections
import itertools
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import httpx
import psycopg
import pytest

from tests.pg import temporary_database
from tests.pgserver import private_postgres
from tests.procs import Proc, ready, spawn_api, spawn_worker, start_worker, started, wait_until
from tests.s3 import ACCESS_KEY, REGION, SECRET_KEY, aws_environ, s3_server

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.timeout(180)]

MODEL = "doubao-seedance-2-0-fast"
SIGNING_SECRET = "scale-out-test-signing-secret-0123456789"
BUCKET = "reelgate-scaleout"
PREFIX = "media"
ORDER = {"SUBMITTED": 0, "IN_PROGRESS": 1, "SUCCESS": 2}
EVENTS = "SELECT detail FROM task_events WHERE task_id = %s ORDER BY seq"


@pytest.fixture
def pg_url() -> Iterator[str]:
    with temporary_database() as url:
        yield url


@pytest.fixture
def procs() -> Iterator[list[Proc]]:
    """Processes a test started; every one still running is stopped afterwards."""
    started_procs: list[Proc] = []
    yield started_procs
    for proc in reversed(started_procs):
        proc.stop(timeout=10)


def common(database_url: str, storage_url: str, **extra: str) -> dict[str, str]:
    """The settings every process of one deployment shares."""
    return {
        "REELGATE_DATABASE_URL": database_url,
        "REELGATE_STORAGE_URL": storage_url,
        "REELGATE_SIGNING_SECRET": SIGNING_SECRET,
        "REELGATE_RENDERER": "instant",
        "REELGATE_LOG_LEVEL": "info",
        **extra,
    }


def create(client: httpx.Client, n: int) -> str:
    response = client.post("/v1/videos", data={"prompt": f"scale-out {n}", "model": MODEL})
    assert response.status_code == 200, response.text
    return str(response.json()["id"])


def rows(url: str, query: str, *params: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute(query, params).fetchall()


def statuses(url: str) -> collections.Counter[str]:
    return collections.Counter(dict(rows(url, "SELECT status, count(*) FROM tasks GROUP BY 1")))


def status_of(url: str, task_id: str) -> str:
    return str(rows(url, "SELECT status FROM tasks WHERE id = %s", task_id)[0][0])


def logs(*procs: Proc) -> str:
    return "\n".join(f"--- {p.name}\n{p.output()[-3000:]}" for p in procs)


@dataclass
class Sampler:
    """Polls some tasks through the API in a thread; records each one's (status, progress)."""

    client: httpx.Client
    ids: list[str] = field(default_factory=list)
    seen: dict[str, list[tuple[str, int]]] = field(default_factory=dict)
    stop: threading.Event = field(default_factory=threading.Event)
    errors: list[str] = field(default_factory=list)

    def run(self) -> None:
        while not self.stop.is_set():
            for task_id in list(self.ids):
                try:
                    response = self.client.get(f"/v1/videos/{task_id}")
                except (httpx.HTTPError, RuntimeError) as exc:  # RuntimeError: client closed
                    self.errors.append(repr(exc))
                    return
                if response.status_code != 200:
                    self.errors.append(response.text)
                    continue
                video = response.json()
                self.seen.setdefault(task_id, []).append((video["status"], video["progress"]))
            time.sleep(0.02)

    def check(self) -> None:
        assert not self.errors, self.errors[:3]
        assert len(self.seen) == len(self.ids)
        for task_id, history in self.seen.items():
            for (status, progress), (later, later_progress) in itertools.pairwise(history):
                assert ORDER[later] >= ORDER[status], f"{task_id} went back: {history}"
                assert later_progress >= progress, f"progress of {task_id} went down: {history}"


def test_kill_9_of_one_worker_loses_nothing_and_renders_nothing_twice(
    pg_url: str, tmp_path: Path, procs: list[Proc]
) -> None:
    tasks = 300
    with s3_server() as endpoint:
        s3 = boto3.client(
            "s3",
            endpoint_url=endpoint,
            region_name=REGION,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
        )
        s3.create_bucket(Bucket=BUCKET)
        s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
        settings = {
            **aws_environ(),
            **common(pg_url, f"s3://{BUCKET}/{PREFIX}"),
            "REELGATE_S3_ENDPOINT_URL": endpoint,
            "REELGATE_S3_REGION": REGION,
            "REELGATE_S3_ACCESS_KEY_ID": ACCESS_KEY,
            "REELGATE_S3_SECRET_ACCESS_KEY": SECRET_KEY,
            "REELGATE_PREVIEW_DELAY": "*=0.2",
            "REELGATE_LEASE_SECONDS": "2",
            "REELGATE_POLL_INTERVAL": "0.5",
        }
        api = spawn_api(tmp_path / "api", settings)
        procs.append(api)
        ready(api)  # it migrates the schema and makes the first key
        workers = [
            spawn_worker(tmp_path / f"w{i}", settings, name=f"worker{i}", concurrency=4)
            for i in range(3)
        ]
        procs.extend(workers)
        for worker in workers:
            started(worker)
        victim = workers[0]

        headers = {"Authorization": f"Bearer {api.first_key()}"}
        client = httpx.Client(base_url=api.base_url, headers=headers, timeout=30)
        sampler = Sampler(client)
        poller = threading.Thread(target=sampler.run, daemon=True)
        poller.start()
        with ThreadPoolExecutor(8) as pool:
            submitted = [pool.submit(create, client, n) for n in range(tasks)]
            for future in submitted[::10]:  # follow every tenth task from its creation on
                future.add_done_callback(lambda done: sampler.ids.append(done.result()))

            def victim_busy() -> bool:
                done = statuses(pg_url)["SUCCESS"]
                held = rows(pg_url, "SELECT count(*) FROM tasks WHERE lease_owner = %s", victim.id)
                return done >= tasks // 4 and held[0][0] >= 2

            wait_until(victim_busy, timeout=30, what="a quarter done, the victim busy")
            victim.kill()
            ids = [future.result() for future in submitted]

        # Its leases are still valid for a while (lease 2 s, heartbeats every 0.67 s): nobody
        # has taken its tasks yet. Note which of them it had uploaded before it died (killed
        # between the upload and the final update): the next attempt must reuse that upload.
        time.sleep(0.3)  # requests that reached the store before the kill are complete
        orphans = [
            task_id
            for (task_id,) in rows(
                pg_url,
                "SELECT id FROM tasks WHERE lease_owner = %s AND status = 'IN_PROGRESS'",
                victim.id,
            )
        ]
        uploaded_before = {
            task_id: len(versions(s3, f"{PREFIX}/videos/{task_id}.1.mp4")) for task_id in orphans
        }
        assert orphans, "the victim held no task when it died"
        assert max(uploaded_before.values()) <= 1, uploaded_before
        held = "SELECT count(*) FROM tasks WHERE id = ANY(%s) AND lease_owner = %s"
        still_held = rows(pg_url, held, orphans, victim.id)[0][0]
        assert still_held == len(orphans), "checked too late: its leases expired meanwhile"

        def all_done() -> bool:
            counts = statuses(pg_url)
            assert set(counts) <= set(ORDER), (counts, logs(*procs))
            return counts["SUCCESS"] == tasks

        wait_until(all_done, timeout=60, what=f"{tasks} tasks to succeed\n{logs(*procs)}")
        sampler.stop.set()
        poller.join(timeout=30)
        sampler.check()

        # One video per task, and exactly one version of it: nobody uploaded a finished
        # render twice, not even for a task whose worker died right after its upload.
        # (Thumbnails go up before their video: a retried task may upload its again.)
        by_key = all_versions(s3, f"{PREFIX}/videos/")
        recorded = dict(rows(pg_url, "SELECT id, output_key FROM tasks"))
        assert sorted(by_key) == sorted(f"{PREFIX}/{recorded[task_id]}" for task_id in ids)
        twice = {key: count for key, count in by_key.items() if count != 1}
        assert not twice, f"outputs uploaded more than once: {twice}"

        # The dead worker's tasks were claimed again (a second attempt), by someone else.
        attempts = dict(rows(pg_url, "SELECT id, attempts FROM tasks"))
        assert set(attempts) == set(ids)
        for task_id in orphans:
            assert attempts[task_id] >= 2, task_id
            details = [d for (d,) in rows(pg_url, EVENTS, task_id)]
            assert "attempt 2" in details, details
        assert all(attempts[task_id] == 1 for task_id in set(ids) - set(orphans)), attempts

        # Progress never went down in any task's recorded history.
        history: dict[str, list[int]] = collections.defaultdict(list)
        events = "SELECT task_id, progress FROM task_events ORDER BY task_id, seq"
        for task_id, progress in rows(pg_url, events):
            history[task_id].append(progress)
        for task_id, values in history.items():
            assert values == sorted(values), f"progress of {task_id} went down: {values}"

        # Presigned downloads with a plain HTTP client, byte for byte.
        for task_id in [*orphans[:2], *ids[:3]]:
            video = client.get(f"/v1/videos/{task_id}").json()
            assert video["status"] == "SUCCESS" and video["progress"] == 100
            assert "X-Amz-Signature=" in video["video_url"]
            download = httpx.get(video["video_url"], timeout=10)
            assert download.status_code == 200, download.text
            stored = s3.get_object(Bucket=BUCKET, Key=f"{PREFIX}/{recorded[task_id]}")
            assert download.content == stored["Body"].read()
            assert download.content[4:8] == b"ftyp"
        client.close()
        print(
            f"kill -9: {len(orphans)} tasks orphaned, {sum(uploaded_before.values())} of them "
            f"uploaded before the kill, max attempts {max(attempts.values())}, "
            f"{len(sampler.ids)} tasks sampled {sum(map(len, sampler.seen.values()))} times"
        )


def versions(s3: Any, key: str) -> list[dict[str, Any]]:
    """The versions stored under exactly ``key``."""
    listing = s3.list_object_versions(Bucket=BUCKET, Prefix=key)
    assert not listing.get("DeleteMarkers"), listing["DeleteMarkers"]
    return [v for v in listing.get("Versions", []) if v["Key"] == key]


def all_versions(s3: Any, prefix: str) -> dict[str, int]:
    """How many versions each key under ``prefix`` has; there are no delete markers."""
    counts: collections.Counter[str] = collections.Counter()
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=BUCKET, Prefix=prefix):
        assert not page.get("DeleteMarkers"), page["DeleteMarkers"]
        counts.update(version["Key"] for version in page.get("Versions", []))
    return dict(counts)


@dataclass
class Load:
    """A client thread that creates tasks and reads them back, recording every answer."""

    client: httpx.Client
    created: list[str] = field(default_factory=list)
    answers: list[tuple[float, str, int, str | None, float]] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        n = 0
        while not self.stop.is_set():
            n += 1
            self.call("POST", "/v1/videos", data={"prompt": f"outage {n}", "model": MODEL})
            if self.created:
                self.call("GET", f"/v1/videos/{self.created[n % len(self.created)]}")
            time.sleep(0.05)

    def call(self, method: str, path: str, **kwargs: Any) -> None:
        started_at = time.monotonic()
        try:
            response = self.client.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            self.failures.append(f"{method} {path}: {exc!r}")
            return
        took = time.monotonic() - started_at
        code = None
        if response.status_code != 200:
            code = response.json().get("error", {}).get("code")
        elif method == "POST":
            self.created.append(response.json()["id"])
        self.answers.append((started_at, method, response.status_code, code, took))


def timed(call: Callable[[], httpx.Response]) -> tuple[httpx.Response, float]:
    """``call()``'s response and how long it took, in seconds."""
    began = time.monotonic()
    response = call()
    return response, time.monotonic() - began


def envelope_503(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    error = response.json()["error"]
    assert error["code"] == "service_unavailable" and error["type"] == "service_unavailable"
    assert response.headers.get("retry-after")


def test_postgres_outage_answers_503_and_loses_nothing(tmp_path: Path, procs: list[Proc]) -> None:
    with private_postgres() as pg:
        with psycopg.connect(pg.url(), autocommit=True) as conn:
            conn.execute("CREATE DATABASE reelgate")
        url = pg.url("reelgate")
        settings = {
            **common(url, f"file://{tmp_path / 'blobs'}"),
            "REELGATE_PREVIEW_DELAY": "*=0.2",
            "REELGATE_LEASE_SECONDS": "2",
            "REELGATE_POLL_INTERVAL": "0.5",
        }
        api = spawn_api(tmp_path / "api", settings)
        procs.append(api)
        ready(api)
        worker = start_worker(tmp_path / "worker", settings, concurrency=4)
        procs.append(worker)
        headers = {"Authorization": f"Bearer {api.first_key()}"}
        client = httpx.Client(base_url=api.base_url, headers=headers, timeout=30)
        load = Load(client)
        loader = threading.Thread(target=load.run, daemon=True)
        loader.start()
        try:
            wait_until(lambda: statuses(url)["SUCCESS"] >= 5, timeout=20, what="renders under way")
            pg.stop("fast")
            down_at = time.monotonic()
            try:
                time.sleep(0.5)
                with ThreadPoolExecutor(4) as pool:  # at once: each may wait for a connection
                    health, *unavailable = pool.map(
                        timed,
                        [
                            lambda: client.get("/healthz"),
                            lambda: client.get("/readyz"),
                            lambda: client.post("/v1/videos", data={"prompt": "x", "model": MODEL}),
                            lambda: client.get(f"/v1/videos/{load.created[0]}"),
                        ],
                    )
                time.sleep(max(0.0, down_at + 5 - time.monotonic()))  # away for 5 s at least
            finally:
                pg.start()  # and wait until it answers
            up_at = time.monotonic()

            def created_again() -> bool:
                return any(t > up_at and m == "POST" and s == 200 for t, m, s, *_ in load.answers)

            wait_until(created_again, timeout=20, what="a create to succeed after the outage")
            recovered_in = time.monotonic() - up_at
            time.sleep(1)
        finally:
            load.stop.set()
            loader.join(timeout=60)

        # While it was away: /healthz 200 at once; the rest 503 in the envelope.
        assert health[0].status_code == 200 and health[1] < 1, health
        for response, _ in unavailable:
            envelope_503(response)
        assert not load.failures, load.failures[:3]
        during = [a for a in load.answers if a[0] < up_at and a[0] + a[4] > down_at]
        assert any(a[2] == 503 for a in during), "the load saw no 503 during the outage"
        wrong = [
            a for a in load.answers if a[2] != 200 and (a[2], a[3]) != (503, "service_unavailable")
        ]
        assert not wrong, wrong[:5]
        slowest = max([took for *_, took in load.answers] + [t for _, t in [health, *unavailable]])
        assert slowest < 10, f"an answer took {slowest:.1f}s"

        # Once it is back: every acknowledged task succeeds, and new ones too.
        def all_done() -> bool:
            counts = statuses(url)
            return counts["SUCCESS"] == sum(counts.values())

        wait_until(all_done, timeout=45, what=f"every task to succeed\n{logs(api, worker)}")
        stored = {task_id for (task_id,) in rows(url, "SELECT id FROM tasks")}
        assert set(load.created) <= stored, "an acknowledged create was lost"
        last = create(client, 0)
        wait_until(
            lambda: status_of(url, last) == "SUCCESS", timeout=20, what="a task made afterwards"
        )
        client.close()
        assert api.alive() and worker.alive(), logs(api, worker)
        retried = rows(url, "SELECT count(*) FROM tasks WHERE attempts > 1")[0][0]
        assert worker.stop(timeout=10) == 0, worker.output()
        # uvicorn re-raises SIGTERM once it has shut down gracefully
        assert api.stop(timeout=10) in (0, -signal.SIGTERM), api.output()
        print(
            f"outage: {up_at - down_at:.1f}s, slowest answer {slowest:.2f}s, "
            f"creates work again {recovered_in:.2f}s after the restart, "
            f"{len(load.created)} tasks created, {retried} rendered again"
        )


def test_sigterm_hands_a_long_render_back_at_once(
    pg_url: str, tmp_path: Path, procs: list[Proc]
) -> None:
    settings = common(pg_url, f"file://{tmp_path / 'blobs'}", REELGATE_LEASE_SECONDS="20")
    api = spawn_api(tmp_path / "api", settings)
    procs.append(api)
    ready(api)
    slow_settings = {**settings, "REELGATE_PREVIEW_DELAY": "*=30"}
    slow = start_worker(tmp_path / "slow", slow_settings, name="slow", grace=1)
    procs.append(slow)
    headers = {"Authorization": f"Bearer {api.first_key()}"}
    with httpx.Client(base_url=api.base_url, headers=headers, timeout=30) as client:
        task_id = create(client, 0)

    def owner() -> str | None:
        found = rows(pg_url, "SELECT lease_owner FROM tasks WHERE id = %s", task_id)
        return found[0][0] if found else None

    wait_until(lambda: owner() == slow.id, timeout=20, what="the slow worker to claim the task")
    # The second worker polls only every 60 s: only the hand-back's NOTIFY wakes it in time.
    fast_settings = {
        **settings,
        "REELGATE_POLL_INTERVAL": "60",
        "REELGATE_PREVIEW_DELAY": "*=0.1",
    }
    fast = start_worker(tmp_path / "fast", fast_settings, name="fast")
    procs.append(fast)
    listening = (
        "SELECT count(*) FROM pg_stat_activity "
        "WHERE datname = current_database() AND query ILIKE 'LISTEN%%'"
    )
    wait_until(lambda: rows(pg_url, listening)[0][0] >= 2, timeout=20, what="two listeners")

    signalled = time.monotonic()
    slow.send(signal.SIGTERM)
    status = slow.popen.wait(timeout=20)
    exited_in = time.monotonic() - signalled

    def taken() -> bool:
        return owner() == fast.id or status_of(pg_url, task_id) == "SUCCESS"

    wait_until(taken, timeout=10, what="the fast worker to take the task", interval=0.01)
    taken_in = time.monotonic() - signalled
    wait_until(
        lambda: status_of(pg_url, task_id) == "SUCCESS", timeout=20, what="the task to succeed"
    )

    assert status == 0, slow.output()
    assert exited_in < 5, f"the worker took {exited_in:.1f}s to exit\n{slow.output()}"
    assert taken_in < exited_in + 2, f"taken {taken_in:.1f}s after SIGTERM"
    assert f"handed task {task_id} back" in slow.output()
    (attempts,) = rows(pg_url, "SELECT attempts FROM tasks WHERE id = %s", task_id)[0]
    assert attempts == 1, "handing back must not count as an attempt"
    details = [d for (d,) in rows(pg_url, EVENTS, task_id) if d != "progress"]  # not steps
    assert details[1:] == ["attempt 1", "released", "attempt 1", None], details
    print(
        f"graceful: worker exited {exited_in:.2f}s after SIGTERM, "
        f"task taken again {taken_in:.2f}s after it"
    )


def test_sigterm_to_a_preview_workers_process_group_hands_the_render_back(
    pg_url: str, tmp_path: Path, procs: list[Proc]
) -> None:
    """As systemd stops a unit: SIGTERM to every process of the worker, render children too."""
    settings = {
        "REELGATE_DATABASE_URL": pg_url,
        "REELGATE_STORAGE_URL": f"file://{tmp_path / 'blobs'}",
        "REELGATE_SIGNING_SECRET": SIGNING_SECRET,
        "REELGATE_PREVIEW_DELAY": "*=30",
        "REELGATE_LEASE_SECONDS": "20",
    }
    api = spawn_api(tmp_path / "api", settings)
    procs.append(api)
    ready(api)
    worker = start_worker(tmp_path / "worker", settings, grace=1)
    procs.append(worker)
    headers = {"Authorization": f"Bearer {api.first_key()}"}
    with httpx.Client(base_url=api.base_url, headers=headers, timeout=30) as client:
        data = {"prompt": "group", "model": MODEL, "seconds": "4", "resolution": "480p"}
        task_id = client.post("/v1/videos", data=data).json()["id"]
        wait_until(
            lambda: client.get(f"/v1/videos/{task_id}").json()["progress"] > 0,
            timeout=30,
            what="the render to be under way",
        )
    signalled = time.monotonic()
    worker.send(signal.SIGTERM)  # the whole group, as `systemctl stop` does by default
    try:
        worker.popen.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the worker still runs 10 s after SIGTERM (grace 1 s)\n{worker.output()}")
    exited_in = time.monotonic() - signalled
    (status, owner, attempts) = rows(
        pg_url, "SELECT status, lease_owner, attempts FROM tasks WHERE id = %s", task_id
    )[0]
    assert (status, owner, attempts) == ("IN_PROGRESS", None, 0), worker.output()
    assert exited_in < 5, exited_in
