"""Usage per owner and model: only SUCCESS tasks are charged, priced by the config file."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from reelgate.domain.quotas import DAY, Role, UsageLine, day_of
from reelgate.domain.status import Status
from reelgate.ports import QuotaStore, TaskStore
from reelgate.store.memory import MemoryStore
from tests.operator.stores import MODEL, finish, new_task
from tests.server import LiveServer, start_server

NOW = 1_700_000_000.0


async def _with_tokens(store: TaskStore, task_id: str, tokens: int) -> None:
    """Record upstream tokens on a task, as the watcher does when a provider reports them."""
    if isinstance(store, MemoryStore):
        from dataclasses import replace

        store._tasks[task_id] = replace(store._tasks[task_id], usage_tokens=tokens)
        return
    statement = "UPDATE tasks SET usage_tokens = :tokens WHERE id = :id"
    from reelgate.store.postgres import PostgresStore
    from reelgate.store.sql import for_psycopg

    if isinstance(store, PostgresStore):
        await store._rows(for_psycopg(statement), {"tokens": tokens, "id": task_id})
    else:
        await store._write(lambda conn: conn.execute(statement, {"tokens": tokens, "id": task_id}))  # type: ignore[attr-defined]


async def test_only_success_is_charged_and_deletes_keep_usage(store: TaskStore) -> None:
    day = day_of(NOW)
    ok = [new_task("alice", NOW + i, seconds=4 + i) for i in range(2)]
    failed, cancelled = new_task("alice", NOW + 5), new_task("alice", NOW + 6)
    other = new_task("bob", NOW + 7, model="doubao-seedance-2-0")
    for task in [*ok, failed, cancelled, other]:
        await store.create_task(task)
    await _with_tokens(store, ok[0].id, 1000)
    for task in ok:
        await finish(store, task, Status.SUCCESS, NOW + 10)
    await finish(store, failed, Status.FAILED, NOW + 11)
    await store.cancel_task(cancelled.id, now=NOW + 12)
    await finish(store, other, Status.SUCCESS, NOW + DAY)  # completed the next day
    quotas: QuotaStore = store  # type: ignore[assignment]
    assert await quotas.usage(day, day) == [UsageLine("alice", MODEL, 2, 9, 1000)]
    assert await store.delete_task(ok[0].id)
    both = await quotas.usage(day, day + 1)
    assert both == [
        UsageLine("alice", MODEL, 2, 9, 1000),
        UsageLine("bob", "doubao-seedance-2-0", 1, 5, 0),
    ]
    assert await quotas.usage(day, day + 1, owner="bob") == both[1:]
    assert await quotas.usage(day, day + 1, model=MODEL) == both[:1]
    assert await quotas.usage(day + 2, day + 9) == []


# Over HTTP, with a price table ---------------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    folder = Path(tmp_path_factory.mktemp("usage"))
    config = folder / "reelgate.toml"
    config.write_text(
        f'[prices."{MODEL}"]\nper_second = 0.1\nper_million_tokens = 2.5\ncurrency = "USD"\n'
    )
    live = start_server(folder, renderer="instant", config=str(config), url_ttl=60)
    yield live
    live.stop()


def _done(server: LiveServer, owner: str, model: str = MODEL) -> None:
    created = httpx.post(
        f"{server.base_url}/v1/videos",
        json={"model": model, "prompt": "a", "seconds": 5},
        headers=server.headers(owner),
    ).json()

    def finished() -> bool:
        task = httpx.get(
            f"{server.base_url}/v1/videos/{created['id']}", headers=server.headers(owner)
        ).json()
        return bool(task["status"] == "SUCCESS")

    from tests.procs import wait_until

    wait_until(finished, timeout=30, what="the task to succeed")


def test_owners_read_their_own_usage_admins_everyones(server: LiveServer) -> None:
    _done(server, "alice")
    _done(server, "alice")
    _done(server, "bob", "doubao-seedance-2-0")
    today = dt.datetime.now(dt.UTC).date().isoformat()
    own = httpx.get(f"{server.base_url}/v1/usage", headers=server.headers("alice"))
    assert own.status_code == 200, own.text
    body = own.json()
    assert body["to"] == today and body["object"] == "usage"
    assert body["data"] == [
        {
            "owner": "alice",
            "model": MODEL,
            "tasks": 2,
            "seconds": 10,
            "tokens": 0,
            "cost": 1.0,
            "currency": "USD",
        }
    ]
    assert body["totals"] == {"tasks": 2, "seconds": 10, "tokens": 0, "cost": {"USD": 1.0}}

    _, secret = server.call(server.components.keys.create("ops", role=Role.ADMIN))
    admin = {"Authorization": f"Bearer {secret}"}
    everyone = httpx.get(
        f"{server.base_url}/v1/admin/usage", params={"from": today, "to": today}, headers=admin
    ).json()
    assert [(line["owner"], line["cost"]) for line in everyone["data"]] == [
        ("alice", 1.0),
        ("bob", None),  # no price for the model: no cost
    ]
    only_bob = httpx.get(
        f"{server.base_url}/v1/admin/usage", params={"owner": "bob"}, headers=admin
    ).json()
    assert [line["owner"] for line in only_bob["data"]] == ["bob"]


@pytest.mark.parametrize(
    "params",
    [
        {"from": "yesterday"},
        {"to": "2025-13-01"},
        {"from": "2025-02-01", "to": "2025-01-01"},
        {"from": "2000-01-01", "to": "2025-01-01"},
    ],
)
def test_bad_ranges_are_400(server: LiveServer, params: dict[str, str]) -> None:
    answer = httpx.get(f"{server.base_url}/v1/usage", params=params, headers=server.headers())
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"]["param"] in ("from", "to")


def test_a_range_ending_on_the_first_calendar_day_is_200(server: LiveServer) -> None:
    """``to`` alone, on 0001-01-01: the default ``from`` stops at that day (no 500)."""
    answer = httpx.get(
        f"{server.base_url}/v1/usage", params={"to": "0001-01-01"}, headers=server.headers()
    )
    assert answer.status_code == 200, answer.text
    assert (answer.json()["from"], answer.json()["data"]) == ("0001-01-01", [])
