"""Every foreign error of the store adapters becomes a domain error (none escapes as a 500).

Each adapter keeps one table (``ERRORS``: driver class -> domain class) applied in one
place; these tests raise every class of the table through that place, check that the
table covers every error class the driver declares, and provoke real ones end to end.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from reelgate.domain.errors import (
    Conflict,
    InvalidParameter,
    ReelgateError,
    Unavailable,
)
from reelgate.domain.status import Status
from reelgate.domain.task import Task, TaskSpec, new_task_id
from reelgate.store import postgres, sqlite
from reelgate.store.postgres import PostgresStore
from reelgate.store.sqlite import SqliteStore
from tests.pg import temporary_database
from tests.server import LiveServer, start_server

SECRET = "/srv/secret/reelgate.db: detail only for the log"


def foreign(cls: type[Exception]) -> Exception:
    """An instance of ``cls`` whose text is a secret (a path)."""
    if issubclass(cls, UnicodeEncodeError):
        return cls("utf-8", SECRET + "\ud800", len(SECRET), len(SECRET) + 1, "surrogates")
    return cls(SECRET)


def task(prompt: str = "a cat") -> Task:
    now = time.time()
    spec = TaskSpec("doubao-seedance-2-0", prompt, 5, "16:9", "720p")
    return Task(new_task_id(), "alice", spec, Status.SUBMITTED, 0, now, now)


def check(error: BaseException, expected: type[ReelgateError], cause: Exception) -> None:
    assert type(error) is expected, (type(cause), type(error))
    assert error.__cause__ is cause
    assert SECRET not in str(error) and "/srv" not in error.message
    assert type(cause).__name__ in error.message  # the class only: the detail is logged


def db_api_classes(module: Any) -> set[type[Exception]]:
    """The DB-API exception classes a driver module declares (PEP 249)."""
    names = ("Warning", "Error", "InterfaceError", "DatabaseError", "DataError")
    names += ("OperationalError", "IntegrityError", "InternalError", "ProgrammingError")
    return {getattr(module, name) for name in (*names, "NotSupportedError")}


# the tables ------------------------------------------------------------------------------


@pytest.mark.parametrize("adapter", [sqlite, postgres], ids=["sqlite", "postgresql"])
def test_the_table_covers_every_driver_error(adapter: Any) -> None:
    driver = sqlite3 if adapter is sqlite else psycopg
    assert db_api_classes(driver) <= set(adapter.ERRORS)
    assert set(adapter.ERRORS.values()) == {Unavailable, Conflict, InvalidParameter}
    # the driver's refusals of a value map to 400 and 409; everything else to 503
    assert adapter.ERRORS[driver.IntegrityError] is Conflict
    assert adapter.ERRORS[driver.DataError] is InvalidParameter
    assert adapter.ERRORS[driver.OperationalError] is Unavailable


@pytest.mark.parametrize("adapter", [sqlite, postgres], ids=["sqlite", "postgresql"])
def test_convert_maps_every_class_of_the_table(adapter: Any) -> None:
    for cls, expected in adapter.ERRORS.items():
        error = adapter.convert(foreign(cls))
        assert type(error) is expected, cls
        assert SECRET not in error.message
    # psycopg's subclasses find their entry through the class hierarchy
    assert type(postgres.convert(psycopg.errors.ForeignKeyViolation("x"))) is Conflict
    assert type(postgres.convert(psycopg.errors.NumericValueOutOfRange("x"))) is InvalidParameter
    assert type(postgres.convert(psycopg.errors.QueryCanceled("x"))) is Unavailable
    assert type(postgres.convert(psycopg.errors.SerializationFailure("x"))) is Unavailable
    # what is not the driver's passes through untouched
    assert adapter.convert(RuntimeError("a bug")) is None
    assert adapter.convert(Conflict("ours")) is None


# through each adapter's one place --------------------------------------------------------


@pytest.fixture
async def sqlite_store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    store = SqliteStore(tmp_path / "tasks.db")
    await store.migrate()
    yield store
    await store.close()


@pytest.fixture(scope="module")
def pg_url() -> Iterator[str]:
    with temporary_database() as url:
        yield url


@pytest.fixture
async def pg_store(pg_url: str) -> AsyncIterator[PostgresStore]:
    store = PostgresStore(pg_url, max_size=2)
    await store.migrate()
    yield store
    await store.close()


async def test_sqlite_write_and_read_convert_every_class(sqlite_store: SqliteStore) -> None:
    for cls, expected in sqlite.ERRORS.items():
        cause = foreign(cls)

        def fail(conn: sqlite3.Connection, cause: Exception = cause) -> None:
            raise cause

        with pytest.raises(ReelgateError) as info:
            await sqlite_store._write(fail)
        check(info.value, expected, cause)

        class Failing:
            def execute(self, *args: object, cause: Exception = cause) -> None:
                raise cause

        original = sqlite_store._connect
        sqlite_store._connect = Failing  # type: ignore[assignment,method-assign]
        try:
            with pytest.raises(ReelgateError) as info:
                sqlite_store._read("SELECT 1", {})
        finally:
            sqlite_store._connect = original  # type: ignore[method-assign]
        check(info.value, expected, cause)


@pytest.mark.postgres
async def test_postgres_connection_converts_every_class(pg_store: PostgresStore) -> None:
    for cls, expected in postgres.ERRORS.items():
        cause = foreign(cls)
        with pytest.raises(ReelgateError) as info:
            async with pg_store._connection():
                raise cause
        check(info.value, expected, cause)
    assert await pg_store.get_task("task_x") is None  # the pool survived it all


# real errors, end to end -------------------------------------------------------------------


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def any_store(request: pytest.FixtureRequest) -> Any:
    return request.getfixturevalue(f"{'pg' if request.param == 'postgresql' else 'sqlite'}_store")


async def test_a_duplicate_task_id_is_a_conflict(any_store: Any) -> None:
    first = task()
    await any_store.create_task(first)
    with pytest.raises(Conflict) as info:
        await any_store.create_task(first)
    assert first.id not in info.value.message
    assert (await any_store.get_task(first.id)) == first


async def test_text_no_store_can_hold(any_store: Any) -> None:
    with pytest.raises(InvalidParameter):
        await any_store.create_task(task("a\ud800b"))  # UTF-8 cannot carry it: both stores
    for task_id in ("task_\x00", "task_\ud800"):
        assert await any_store.get_task(task_id) is None  # a lookup finds nothing
        assert await any_store.list_events(task_id) == []


@pytest.mark.postgres
async def test_postgres_refuses_nul_as_invalid(pg_store: PostgresStore) -> None:
    with pytest.raises(InvalidParameter) as info:
        await pg_store.create_task(task("a\x00b"))
    assert "NUL" not in info.value.message  # the driver's text stays in the log
    assert isinstance(info.value.__cause__, psycopg.DataError)


async def test_sqlite_unavailable_files_hide_their_path(tmp_path: Path) -> None:
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not a database, " * 100)
    folder = tmp_path / "a-folder.db"
    folder.mkdir()
    for path in (junk, folder):
        store = SqliteStore(path)
        try:
            with pytest.raises(Unavailable) as info:
                await store.migrate()
            assert str(tmp_path) not in info.value.message
            assert isinstance(info.value.__cause__, sqlite3.DatabaseError)
        finally:
            await store.close()


@pytest.mark.postgres
async def test_postgres_away_is_unavailable() -> None:
    store = PostgresStore("postgresql://postgres@127.0.0.1:1/nothing", max_size=1)
    try:
        with pytest.raises(Unavailable) as info:
            async with store._connection(timeout=0.5):
                pass
        assert "127.0.0.1" not in info.value.message
    finally:
        await store.close()


# through the API: a 4xx or 503 in the envelope, the detail in the log only -----------------


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    live = start_server(Path(tmp_path_factory.mktemp("store-errors")), workers=0)
    yield live
    live.stop()


@pytest.mark.parametrize(
    ("cls", "status", "code"),
    [
        (sqlite3.IntegrityError, 409, "conflict"),
        (sqlite3.DataError, 400, "InvalidParameter"),
        (sqlite3.OperationalError, 503, "service_unavailable"),
        (sqlite3.ProgrammingError, 503, "service_unavailable"),
        (sqlite3.DatabaseError, 503, "service_unavailable"),
    ],
)
def test_api_answers_converted_errors_without_detail(
    server: LiveServer, cls: type[Exception], status: int, code: str
) -> None:
    store = server.components.store
    assert isinstance(store, SqliteStore)
    original = store.create_task

    async def create_task(task: Task) -> None:
        def fail(conn: sqlite3.Connection) -> None:
            raise cls(SECRET)

        await store._write(fail)

    store.create_task = create_task  # type: ignore[method-assign]
    try:
        response = httpx.post(
            f"{server.base_url}/v1/videos",
            json={"prompt": "a", "model": "doubao-seedance-2-0"},
            headers=server.headers(),
        )
    finally:
        store.create_task = original  # type: ignore[method-assign]
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code
    assert SECRET not in response.text and "/srv" not in response.text
