"""Keys' limits and the global queue cap: counted in the store's create transaction.

On every store (memory, SQLite, PostgreSQL): each limit refuses the create past it
with ``RateLimited`` (its code and a Retry-After) and stores nothing. Over HTTP, on
every create path (/v1/videos JSON and multipart, the OpenAI and Ark dialects): 429 in
the path's envelope with Retry-After, and no row, no image blob, no idempotency key.
Across two API processes sharing one PostgreSQL database, no limit is overrun.
"""

from __future__ import annotations

import io
import sqlite3
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from PIL import Image

from reelgate.domain.errors import RateLimited
from reelgate.domain.quotas import DAY, Limits, Role
from reelgate.domain.status import Status
from reelgate.ports import TaskStore
from tests.operator.stores import MODEL, finish, new_task
from tests.pg import temporary_database
from tests.procs import Proc, ready, spawn_api, wait_until
from tests.server import LiveServer, start_server

NOW = 1_699_999_980.0 + 30  # the middle of a UTC minute


def _png() -> bytes:
    image = io.BytesIO()
    Image.new("RGB", (64, 36), (200, 100, 50)).save(image, "PNG")
    return image.getvalue()


PNG = _png()


async def _refused(store: TaskStore, owner: str, limits: Limits, now: float) -> RateLimited:
    task = new_task(owner, now)
    with pytest.raises(RateLimited) as caught:
        await store.create_task(task, limits)
    assert await store.get_task(task.id) is None  # nothing stored
    return caught.value


async def test_rate_per_minute(store: TaskStore) -> None:
    limits = Limits(rate_per_minute=3)
    for _ in range(3):
        await store.create_task(new_task("alice", NOW), limits)
    refused = await _refused(store, "alice", limits, NOW + 1)
    assert refused.code == "rate_limited" and refused.retry_after == 29
    await store.create_task(new_task("bob", NOW), limits)  # counted per owner
    await store.create_task(new_task("alice", NOW + 60), limits)  # the next minute


async def test_a_rate_of_zero_refuses_every_create(store: TaskStore) -> None:
    refused = await _refused(store, "alice", Limits(rate_per_minute=0), NOW)
    assert refused.code == "rate_limited"


async def test_max_active_counts_unfinished_tasks(store: TaskStore) -> None:
    limits = Limits(max_active=2)
    first = new_task("alice", NOW)
    await store.create_task(first, limits)
    await store.create_task(new_task("alice", NOW + 1), limits)
    refused = await _refused(store, "alice", limits, NOW + 2)
    assert refused.code == "active_tasks_limit" and refused.retry_after > 0
    await finish(store, first, Status.SUCCESS, NOW + 3)
    await store.create_task(new_task("alice", NOW + 4), limits)  # one finished: room again


async def test_seconds_per_day_refunds_failed_and_cancelled(store: TaskStore) -> None:
    limits = Limits(seconds_per_day=12)
    failing = new_task("alice", NOW, seconds=5)
    cancelled = new_task("alice", NOW + 1, seconds=5)
    await store.create_task(failing, limits)
    await store.create_task(cancelled, limits)
    refused = await _refused(store, "alice", limits, NOW + 2)  # 10 + 5 > 12
    assert refused.code == "daily_seconds_limit"
    assert refused.retry_after == DAY - (NOW + 2) % DAY  # until UTC midnight
    await finish(store, failing, Status.FAILED, NOW + 3)
    await store.cancel_task(cancelled.id, now=NOW + 4)
    await store.create_task(new_task("alice", NOW + 5, seconds=12), limits)  # both given back
    await store.create_task(new_task("alice", NOW + DAY, seconds=12), limits)  # a new day


async def test_only_counted_seconds_are_given_back(store: TaskStore) -> None:
    uncounted = [new_task("alice", NOW, seconds=10) for _ in range(2)]
    for task in uncounted:  # made before the key had a daily limit
        await store.create_task(task)
    limits = Limits(seconds_per_day=10)
    await store.create_task(new_task("alice", NOW + 1, seconds=10), limits)  # 10 of 10
    for task in uncounted:
        await store.cancel_task(task.id, now=NOW + 2)
    refused = await _refused(store, "alice", limits, NOW + 3)  # still 10 of 10 today
    assert refused.code == "daily_seconds_limit"


async def test_queue_cap_counts_every_owner(store: TaskStore) -> None:
    limits = Limits(max_queued=2)
    await store.create_task(new_task("alice", NOW), limits)
    await store.create_task(new_task("bob", NOW), limits)
    refused = await _refused(store, "carol", limits, NOW)
    assert refused.code == "queue_full"
    await store.create_task(new_task("carol", NOW))  # no limits: as before


async def test_a_refused_create_counts_nothing(store: TaskStore) -> None:
    limits = Limits(rate_per_minute=2, max_active=1)
    await store.create_task(new_task("alice", NOW), limits)
    for _ in range(3):
        assert (await _refused(store, "alice", limits, NOW)).code == "active_tasks_limit"
    relaxed = Limits(rate_per_minute=2)
    await store.create_task(new_task("alice", NOW), relaxed)  # the refusals did not count
    assert (await _refused(store, "alice", relaxed, NOW)).code == "rate_limited"


# Over HTTP ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    live = start_server(Path(tmp_path_factory.mktemp("limits")), workers=0, url_ttl=60)
    yield live
    live.stop()


def _limited_key(server: LiveServer, owner: str, limits: Limits) -> dict[str, str]:
    _, secret = server.call(server.components.keys.create(owner, limits=limits))
    return {"Authorization": f"Bearer {secret}"}


def _rows(server: LiveServer, sql: str, *params: object) -> list[tuple[object, ...]]:
    with sqlite3.connect(server.settings.data_dir / "reelgate.db") as conn:
        return conn.execute(sql, params).fetchall()


def test_every_create_path_answers_429_and_stores_nothing(server: LiveServer) -> None:
    headers = _limited_key(server, "limited", Limits(max_active=1))
    body = {"model": MODEL, "prompt": "a cat"}
    first = httpx.post(f"{server.base_url}/v1/videos", json=body, headers=headers)
    assert first.status_code == 200, first.text
    blobs = server.settings.data_dir / "blobs"
    before = sorted(p.name for p in blobs.rglob("*") if p.is_file())
    attempts = {
        "json": dict(json=body, headers={**headers, "Idempotency-Key": "k-json"}),
        "multipart": dict(
            data={**body, "model": "doubao-seedance-2-0"},  # a model that takes an image
            files={"input_reference": ("a.png", PNG, "image/png")},
            headers={**headers, "Idempotency-Key": "k-form"},
        ),
    }
    for name, request in attempts.items():
        refused = httpx.post(f"{server.base_url}/v1/videos", **request)  # type: ignore[arg-type]
        assert refused.status_code == 429, (name, refused.text)
        assert int(refused.headers["Retry-After"]) > 0
        error = refused.json()["error"]
        assert (error["type"], error["code"]) == ("rate_limit_error", "active_tasks_limit")
    openai = httpx.post(
        f"{server.base_url}/openai/v1/videos", json={"model": MODEL, "prompt": "a"}, headers=headers
    )
    assert openai.status_code == 429 and openai.json()["error"]["code"] == "active_tasks_limit"
    assert "Retry-After" in openai.headers
    ark = httpx.post(
        f"{server.base_url}/api/v3/contents/generations/tasks",
        json={"model": MODEL, "content": [{"type": "text", "text": "a cat"}]},
        headers=headers,
    )
    assert ark.status_code == 429 and ark.json()["error"]["code"] == "RateLimitExceeded"
    assert "Retry-After" in ark.headers
    assert _rows(server, "SELECT COUNT(*) FROM tasks WHERE owner = ?", "limited") == [(1,)]
    assert _rows(server, "SELECT COUNT(*) FROM idempotency_keys WHERE owner = ?", "limited") == [
        (0,)
    ]
    assert sorted(p.name for p in blobs.rglob("*") if p.is_file()) == before  # no image left


def test_a_key_without_limits_creates_as_before(server: LiveServer) -> None:
    for _ in range(3):
        created = httpx.post(
            f"{server.base_url}/v1/videos",
            json={"model": MODEL, "prompt": "a"},
            headers=server.headers("free"),
        )
        assert created.status_code == 200 and "Retry-After" not in created.headers


# Two API processes, one PostgreSQL database ------------------------------------------


@pytest.fixture
def procs() -> Iterator[list[Proc]]:
    started: list[Proc] = []
    yield started
    for proc in reversed(started):
        proc.stop(timeout=10)


def _burst(urls: list[str], headers: dict[str, str], n: int) -> list[int]:
    """``n`` creates at once, spread over the API processes at ``urls``."""

    def one(i: int) -> int:
        response = httpx.post(
            f"{urls[i % len(urls)]}/v1/videos",
            json={"model": MODEL, "prompt": f"burst {i}"},
            headers=headers,
            timeout=30,
        )
        assert response.status_code in (200, 429), response.text
        return response.status_code

    with ThreadPoolExecutor(16) as pool:
        return list(pool.map(one, range(n)))


@pytest.mark.postgres
@pytest.mark.slow
@pytest.mark.timeout(180)
def test_limits_hold_across_two_api_processes(tmp_path: Path, procs: list[Proc]) -> None:
    with temporary_database() as url:
        settings = {
            "REELGATE_DATABASE_URL": url,
            "REELGATE_STORAGE_URL": f"file://{tmp_path / 'blobs'}",
            "REELGATE_SIGNING_SECRET": "limits-test-signing-secret-0123456789abc",
        }
        first = spawn_api(tmp_path / "a", settings, name="a")
        procs.append(first)
        ready(first)
        second = spawn_api(tmp_path / "b", settings, name="b")
        procs.append(second)
        ready(second)
        urls = [first.base_url, second.base_url]
        admin = {"Authorization": f"Bearer {first.first_key()}"}

        def key(limits: dict[str, int]) -> dict[str, str]:
            made = httpx.post(
                f"{first.base_url}/v1/admin/keys",
                json={"owner": f"o{len(limits)}", "limits": limits},
                headers=admin,
            )
            assert made.status_code == 200, made.text
            assert made.json()["role"] == "user"
            return {"Authorization": f"Bearer {made.json()['secret']}"}

        # No worker runs: every created task stays unfinished.
        statuses = _burst(urls, key({"max_active": 5}), 40)
        assert statuses.count(200) == 5

        # A burst within one minute (not in its last seconds: a new minute resets it).
        wait_until(lambda: time.time() % 60 < 45, timeout=20, what="a fresh minute")
        statuses = _burst(urls, key({"rate_per_minute": 7, "seconds_per_day": 10_000}), 40)
        assert statuses.count(200) == 7


def test_roles_and_limits_are_kept(server: LiveServer) -> None:
    keys = server.components.keys
    key, _ = server.call(keys.create("x", role=Role.ADMIN, limits=Limits(rate_per_minute=4)))
    again = server.call(keys.get(key.id))
    assert again.role is Role.ADMIN and again.limits == Limits(rate_per_minute=4)
