"""The ``HookStore`` contract over memory, SQLite and PostgreSQL: keys and the outbox."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import cast

import pytest

from reelgate.blobs.memory import MemoryBlobs
from reelgate.domain.catalog import Catalog
from reelgate.domain.errors import IdempotencyConflict
from reelgate.domain.status import Status
from reelgate.domain.task import Task, TaskSpec
from reelgate.domain.webhooks import (
    CALLBACK,
    IDEMPOTENCY_TTL,
    Attempt,
    DeliveryState,
    Endpoint,
    IdempotencyRecord,
    new_secret,
)
from reelgate.ports import HookStore, TaskStore
from reelgate.services.addresses import AddressGuard
from reelgate.services.idempotency import CreateService
from reelgate.services.signing import Signer
from reelgate.services.tasks import TaskService
from reelgate.services.webhooks import WebhookService

NOW = 1_800_000_000.0
SPEC = TaskSpec("doubao-seedance-1-0-pro", "a fox", 5, "16:9", "720p")


def hooks(store: TaskStore) -> HookStore:
    return cast(HookStore, store)


async def finished(store: TaskStore, task_id: str, owner: str, status: Status) -> Task:
    await store.create_task(Task(task_id, owner, SPEC, Status.SUBMITTED, 0, NOW, NOW))
    await store.claim_tasks(worker="w", now=NOW, lease_seconds=30, max_attempts=3)
    return await store.finish_task(
        task_id,
        worker="w",
        now=NOW + 1,
        status=status,
        output_key="videos/x.mp4" if status is Status.SUCCESS else None,
        error_code=None if status is Status.SUCCESS else "render_error",
        error_message=None if status is Status.SUCCESS else "it broke",
    )


async def test_terminal_events_fill_the_outbox(store: TaskStore) -> None:
    h = hooks(store)
    await h.add_endpoint(Endpoint("wh_a", "alice", "https://a.example/1", new_secret(), NOW))
    await h.add_endpoint(Endpoint("wh_b", "bob", "https://b.example/1", new_secret(), NOW))
    await h.add_callback("t-1", "https://a.example/cb")
    await store.create_task(Task("t-1", "alice", SPEC, Status.SUBMITTED, 0, NOW, NOW))
    await store.claim_tasks(worker="w", now=NOW, lease_seconds=30, max_attempts=3)
    assert await h.list_deliveries("alice") == []  # not terminal yet: nothing to send
    await store.finish_task("t-1", worker="w", now=NOW + 1, status=Status.SUCCESS, output_key="k")
    await finished(store, "t-2", "alice", Status.FAILED)
    log = await h.list_deliveries("alice", task_id="t-1")
    assert sorted(d.endpoint_id for d in log) == [CALLBACK, "wh_a"]
    assert {(d.status, d.progress, d.output_key, d.state) for d in log} == {
        ("SUCCESS", 100, "k", DeliveryState.PENDING)
    }
    [failed] = await h.list_deliveries("alice", task_id="t-2")
    assert (failed.type, failed.error_code, failed.error_message) == (
        "video.failed",
        "render_error",
        "it broke",
    )
    assert await h.list_deliveries("bob") == []
    assert len(await h.list_deliveries("alice", limit=1)) == 1


async def test_claims_are_leases(store: TaskStore) -> None:
    h = hooks(store)
    endpoint = Endpoint("wh_a", "alice", "https://a.example/1", new_secret(), NOW)
    await h.add_endpoint(endpoint)
    for n in range(5):
        await finished(store, f"t-{n}", "alice", Status.SUCCESS)
    now = NOW + 2
    first = await h.claim_deliveries(now=now, lease_seconds=30, limit=3)
    second = await h.claim_deliveries(now=now, lease_seconds=30, limit=10)
    assert len(first) == 3 and len(second) == 2
    assert {d.id for d, _ in first}.isdisjoint(d.id for d, _ in second)
    assert all(secret == endpoint.secret for _, secret in first + second)
    assert await h.claim_deliveries(now=now + 29, lease_seconds=30, limit=10) == []
    delivery, _ = first[0]
    ok = Attempt(DeliveryState.DELIVERED, now, 200, None, now)
    assert await h.record_attempt(delivery, ok)
    assert not await h.record_attempt(delivery, ok)  # recorded once per claim
    # A claim that outlived its lease is taken again; the old claim can no longer record.
    [again, *_] = await h.claim_deliveries(now=now + 31, lease_seconds=30, limit=10)
    stale = {d.id: d for d, _ in first + second}[again[0].id]
    assert not await h.record_attempt(stale, Attempt(DeliveryState.PENDING, now, 500, "x"))
    assert await h.record_attempt(again[0], Attempt(DeliveryState.PENDING, now + 99, 500, "x"))
    logged = {d.id: d for d in await h.list_deliveries("alice")}
    assert logged[delivery.id].state == DeliveryState.DELIVERED
    assert logged[again[0].id].attempts == 1 and logged[again[0].id].last_status == 500


async def test_deleted_endpoint_has_no_secret(store: TaskStore) -> None:
    h = hooks(store)
    await h.add_endpoint(Endpoint("wh_a", "alice", "https://a.example/1", new_secret(), NOW))
    await finished(store, "t-1", "alice", Status.ERROR)
    assert not await h.delete_endpoint("bob", "wh_a")
    assert await h.delete_endpoint("alice", "wh_a")
    assert await h.list_endpoints("alice") == []
    [(delivery, secret)] = await h.claim_deliveries(now=NOW + 5, lease_seconds=30, limit=5)
    assert delivery.endpoint_id == "wh_a" and secret is None


async def test_parallel_claims_never_share(store: TaskStore) -> None:
    h = hooks(store)
    await h.add_endpoint(Endpoint("wh_a", "alice", "https://a.example/1", new_secret(), NOW))
    for n in range(40):
        await finished(store, f"t-{n}", "alice", Status.SUCCESS)
    batches = await asyncio.gather(
        *(h.claim_deliveries(now=NOW + 2, lease_seconds=30, limit=7) for _ in range(8))
    )
    ids = [d.id for batch in batches for d, _ in batch]
    assert len(ids) == len(set(ids)) == 40


async def test_idempotency_keys(store: TaskStore) -> None:
    h = hooks(store)
    record = IdempotencyRecord("alice", "k", "d1", "t-1", NOW, NOW + IDEMPOTENCY_TTL)
    assert await h.reserve_key(record, now=NOW) is None
    held = await h.reserve_key(IdempotencyRecord("alice", "k", "d2", "t-2", NOW, NOW + 9), now=NOW)
    assert held == record
    assert (
        await h.reserve_key(IdempotencyRecord("bob", "k", "d", "t-3", NOW, NOW + 9), now=NOW)
        is None
    )
    later = NOW + IDEMPOTENCY_TTL + 1
    renewed = IdempotencyRecord("alice", "k", "d2", "t-4", later, later + IDEMPOTENCY_TTL)
    assert await h.reserve_key(renewed, now=later) is None  # expired: free again
    await h.release_key("alice", "k", "t-1")  # not the holder: nothing happens
    assert await h.reserve_key(record, now=later) == renewed
    await h.release_key("alice", "k", "t-4")
    assert await h.reserve_key(record, now=later) is None
    assert await h.purge_keys(now=NOW + 10 * IDEMPOTENCY_TTL) == 2


async def test_create_service_key_expires_after_a_day(store: TaskStore, tmp_path: Path) -> None:
    clock = [NOW]
    signer = Signer(b"s" * 32)
    tasks = TaskService(
        store, MemoryBlobs(), Catalog(), lambda: clock[0], signer, public_url="http://x", url_ttl=60
    )
    webhooks = WebhookService(hooks(store), lambda: clock[0], AddressGuard(), signer)
    creates = CreateService(tasks, store, hooks(store), webhooks, lambda: clock[0])
    fields = {"prompt": "a fox", "model": "doubao-seedance-1-0-pro"}
    first = await creates.create("alice", fields, idempotency_key="day")
    clock[0] += IDEMPOTENCY_TTL - 5
    again = await creates.create("alice", fields, idempotency_key="day")
    assert again.replayed and again.task.id == first.task.id
    with pytest.raises(IdempotencyConflict):
        await creates.create("alice", {**fields, "seconds": 6}, idempotency_key="day")
    clock[0] += 10
    fresh = await creates.create("alice", {**fields, "seconds": 6}, idempotency_key="day")
    assert not fresh.replayed and fresh.task.id != first.task.id


async def test_a_deleted_task_frees_its_key_and_drops_its_callback(store: TaskStore) -> None:
    h = hooks(store)
    task = Task("t-del", "alice", SPEC, Status.SUBMITTED, 0, NOW, NOW)
    await store.create_task(task)
    record = IdempotencyRecord("alice", "k", "d1", task.id, NOW, NOW + IDEMPOTENCY_TTL)
    assert await h.reserve_key(record, now=NOW) is None
    await h.add_callback(task.id, "https://example.com/hook")
    await store.cancel_task(task.id, now=NOW)
    assert await store.delete_task(task.id)
    again = IdempotencyRecord("alice", "k", "d2", "t-new", NOW, NOW + IDEMPOTENCY_TTL)
    assert await h.reserve_key(again, now=NOW) is None  # the key names no deleted task
