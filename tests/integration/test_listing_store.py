"""Listing an owner's tasks, one contract for every store (memory, SQLite, PostgreSQL).

Plus the plans: on both databases a page is an index range scan of
``tasks_owner_listing`` in its order (no sort, no offset), first page or deep.
"""

from __future__ import annotations

import sqlite3
from dataclasses import replace
from pathlib import Path

import psycopg
import pytest

from reelgate.domain.listing import Cursor, ListQuery
from reelgate.domain.status import Status
from reelgate.domain.task import Task
from reelgate.ports import TaskStore
from reelgate.store import open_store, sql
from reelgate.store.sqlite import SqliteStore
from tests.fakes import make_task
from tests.pg import temporary_database

OTHER_MODEL = "doubao-seedance-1-0-pro"


def owned(owner: str, created_at: float, **changes: object) -> Task:
    return replace(make_task(created_at), owner=owner, **changes)  # type: ignore[arg-type]


async def fill(store: TaskStore) -> list[Task]:
    """Twelve tasks of alice's (two pairs created in the same second), three of bob's."""
    mine = [owned("alice", 1000.0 + n) for n in range(10)]
    mine += [owned("alice", 1003.0), owned("alice", 1007.0)]  # ties: the id decides
    theirs = [owned("bob", 1000.0 + n) for n in range(3)]
    for task in mine + theirs:
        await store.create_task(task)
    return sorted(mine, key=lambda t: (t.created_at, t.id))


async def walk(store: TaskStore, owner: str, query: ListQuery) -> tuple[list[str], list[bool]]:
    """Every page from the first; the ids in order and each page's has_more."""
    ids: list[str] = []
    more: list[bool] = []
    cursor: Cursor | None = None
    while True:
        page = await store.list_tasks(owner, query, cursor)
        assert len(page.tasks) <= query.limit
        ids += [task.id for task in page.tasks]
        more.append(page.has_more)
        if not page.has_more:
            return ids, more
        cursor = (page.tasks[-1].created_at, page.tasks[-1].id)


async def test_newest_first_by_default_and_whole_tasks(store: TaskStore) -> None:
    mine = await fill(store)
    page = await store.list_tasks("alice", ListQuery())
    assert [t.id for t in page.tasks] == [t.id for t in reversed(mine)]
    assert not page.has_more
    assert page.tasks[0] == mine[-1]  # the task as stored, every field


@pytest.mark.parametrize("order", ["asc", "desc"])
@pytest.mark.parametrize("limit", [1, 5, 12, 100])
async def test_pages_cover_every_task_once_in_order(
    store: TaskStore, order: str, limit: int
) -> None:
    mine = await fill(store)
    expected = [t.id for t in (mine if order == "asc" else reversed(mine))]
    ids, more = await walk(store, "alice", ListQuery(limit=limit, order=order))  # type: ignore[arg-type]
    assert ids == expected
    assert more == [True] * (len(more) - 1) + [False]
    assert len(more) == max(1, -(-len(mine) // limit))


async def test_other_owners_are_invisible(store: TaskStore) -> None:
    await fill(store)
    bob = await store.list_tasks("bob", ListQuery(order="asc"))
    assert [t.owner for t in bob.tasks] == ["bob"] * 3
    assert (await store.list_tasks("carol", ListQuery())).tasks == []
    # a cursor taken from another owner's list shows nothing of theirs
    alice = await store.list_tasks("alice", ListQuery(limit=1))
    after = (alice.tasks[0].created_at, alice.tasks[0].id)
    assert all(t.owner == "bob" for t in (await store.list_tasks("bob", ListQuery(), after)).tasks)


async def test_filters(store: TaskStore) -> None:
    mine = await fill(store)
    other = owned("alice", 1002.5, spec=replace(mine[0].spec, model=OTHER_MODEL))
    done = owned("alice", 1004.5, status=Status.FAILED)
    for task in (other, done):
        await store.create_task(task)

    async def ids(**query: object) -> list[str]:
        page = await store.list_tasks("alice", ListQuery(order="asc", limit=100, **query))  # type: ignore[arg-type]
        return [t.id for t in page.tasks]

    assert await ids(model=OTHER_MODEL) == [other.id]
    assert other.id not in await ids(model="doubao-seedance-2-0")
    assert await ids(status=Status.FAILED) == [done.id]
    assert done.id not in await ids(status=Status.SUBMITTED)
    everything = sorted([*mine, other, done], key=lambda t: (t.created_at, t.id))
    in_range = [t.id for t in everything if 1003.0 <= t.created_at < 1005.0]
    assert len(in_range) == 4
    assert await ids(created_after=1003.0, created_before=1005.0) == in_range
    assert await ids(created_after=2000.0) == []
    assert await ids(status=Status.FAILED, model=OTHER_MODEL) == []


async def test_filters_page_with_a_cursor(store: TaskStore) -> None:
    mine = await fill(store)
    query = ListQuery(limit=2, order="desc", created_before=1008.0, created_after=1001.0)
    ids, more = await walk(store, "alice", query)
    expected = [t.id for t in reversed(mine) if 1001.0 <= t.created_at < 1008.0]
    assert len(expected) == 9
    assert ids == expected and len(more) == 5


async def test_sqlite_plan_is_an_index_range_without_sort(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "tasks.db")
    await store.migrate()
    await store.close()
    conn = sqlite3.connect(tmp_path / "tasks.db")
    try:
        for query, cursor in _shapes():
            statement, params = sql.list_statement("alice", query, cursor)
            plan = " | ".join(
                row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + statement, params)
            )
            assert "USING INDEX tasks_owner_listing (owner=?" in plan, plan
            assert "TEMP B-TREE" not in plan, plan  # read in the index's order: no sort
            if cursor is not None:
                assert "(created_at,id)<" in plan or "(created_at,id)>" in plan, plan
    finally:
        conn.close()


@pytest.mark.postgres
async def test_postgresql_plan_is_an_index_range_without_sort() -> None:
    with temporary_database() as url:
        store = open_store(url)
        await store.migrate()
        await store.close()
        tasks = [owned(f"owner{n % 10}", 1000.0 + n) for n in range(20_000)]
        with psycopg.connect(url, autocommit=True) as conn:
            with conn.cursor() as cur:
                cur.executemany(
                    sql.for_psycopg(sql.INSERT_TASK), [sql.task_params(t) for t in tasks]
                )
            conn.execute("ANALYZE tasks")
            for query, cursor in _shapes():
                statement, params = sql.list_statement("owner7", query, cursor)
                rows = conn.execute("EXPLAIN " + sql.for_psycopg(statement), params).fetchall()
                plan = " | ".join(row[0] for row in rows)
                assert "tasks_owner_listing" in plan, plan
                assert "Sort" not in plan and "Seq Scan" not in plan, plan
                if cursor is not None:
                    assert "ROW(created_at, id)" in plan, plan  # the cursor is in the index cond


def _shapes() -> list[tuple[ListQuery, Cursor | None]]:
    cursor = (11000.0, "task_x")  # half of the owner's tasks on either side
    return [
        (ListQuery(), None),
        (ListQuery(order="asc"), None),
        (ListQuery(), cursor),
        (ListQuery(order="asc"), cursor),
        (
            ListQuery(
                status=Status.SUBMITTED,  # what most rows have: the planner knows it
                model="doubao-seedance-2-0",
                created_after=1.0,
                created_before=2e9,
            ),
            cursor,
        ),
    ]
