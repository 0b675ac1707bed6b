"""The PostgreSQL task store: several API and worker processes on several machines.

Claims use ``FOR UPDATE SKIP LOCKED`` so that concurrent workers never wait on
each other; migrations hold an advisory lock so that processes starting
together apply each script once. Connection failures become ``Unavailable``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Collection
from typing import Any, TypeVar

import psycopg
from psycopg_pool import AsyncConnectionPool

from reelgate.domain.errors import LeaseLost, NotFound, Unavailable
from reelgate.domain.status import Status, check_terminal
from reelgate.domain.task import ApiKey, Event, Task
from reelgate.store import sql

T = TypeVar("T")
log = logging.getLogger("reelgate.store")
_MIGRATION_LOCK = 0x7265656C  # "reel"
CHANNEL = "reelgate_tasks"
_NOTIFY = f"SELECT pg_notify('{CHANNEL}', '')"

_PICK = """SELECT id FROM tasks WHERE {claimable}{models}
ORDER BY created_at LIMIT 1 FOR UPDATE SKIP LOCKED"""

_Q = {
    name: sql.for_psycopg(text)
    for name, text in {
        "insert_task": sql.INSERT_TASK,
        "insert_event": sql.INSERT_EVENT,
        "select_task": sql.SELECT_TASK,
        "heartbeat": sql.HEARTBEAT.format(greatest="GREATEST"),
        "finish": sql.FINISH,
        "expire": sql.EXPIRE,
        "release": sql.RELEASE,
        "select_events": sql.SELECT_EVENTS,
        "insert_key": sql.INSERT_KEY,
        "key_by_hash": sql.SELECT_KEY_BY_HASH,
        "keys": sql.SELECT_KEYS,
        "revoke_key": sql.REVOKE_KEY,
    }.items()
}


def _claim_sql(filtered: bool) -> str:
    models = " AND model = ANY(:models)" if filtered else ""
    pick = _PICK.format(claimable=sql.CLAIMABLE, models=models)
    text = sql.CLAIM.format(pick=pick, claimable=sql.CLAIMABLE, columns=sql.TASK_COLUMNS)
    return sql.for_psycopg(text)


_CLAIM = {False: _claim_sql(False), True: _claim_sql(True)}


class PostgresListener:
    """Calls ``wake`` whenever a task becomes claimable, through LISTEN/NOTIFY.

    Reconnects with backoff when the connection drops; workers keep a slow
    fallback poll in case a notification is missed meanwhile.
    """

    def __init__(self, url: str) -> None:
        self.url = url

    async def run(self, wake: Callable[[], None]) -> None:
        """Listen until cancelled."""
        delay = 0.5
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(self.url, autocommit=True) as conn:
                    await conn.execute(f"LISTEN {CHANNEL}")
                    delay = 0.5
                    wake()  # a notification may have been missed while away
                    async for _ in conn.notifies():
                        wake()
            except psycopg.Error as exc:
                log.warning("LISTEN %s: %s; reconnecting in %.1fs", CHANNEL, exc, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)


class PostgresStore:
    """``TaskStore`` over a PostgreSQL database, through a connection pool."""

    def __init__(self, url: str, *, min_size: int = 1, max_size: int = 10) -> None:
        self.url = url
        self._pool = AsyncConnectionPool(
            url,
            min_size=min_size,
            max_size=max_size,
            open=False,
            timeout=5.0,
            kwargs={"autocommit": False},
        )
        self._opened = False

    async def _tx(
        self, fn: Callable[[psycopg.AsyncCursor[Any]], Awaitable[T]], timeout: float | None = None
    ) -> T:
        if not self._opened:
            await self._pool.open()
            self._opened = True
        try:
            async with (
                self._pool.connection(timeout=timeout) as conn,
                conn.transaction(),
                conn.cursor() as cur,
            ):
                return await fn(cur)
        except (psycopg.OperationalError, psycopg.errors.AdminShutdown) as exc:
            raise Unavailable(f"postgresql: {exc}") from exc
        except TimeoutError as exc:  # the pool found no working connection in time
            raise Unavailable("postgresql: no connection available") from exc

    async def _rows(self, statement: str, params: dict[str, Any]) -> list[Any]:
        async def run(cur: psycopg.AsyncCursor[Any]) -> list[Any]:
            await cur.execute(statement, params)
            return await cur.fetchall()

        return await self._tx(run)

    # lifecycle -------------------------------------------------------------

    async def migrate(self) -> None:
        async def run(cur: psycopg.AsyncCursor[Any]) -> None:
            await cur.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
            await cur.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations "
                "(version INTEGER PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
            )
            await cur.execute("SELECT version FROM schema_migrations")
            done = {row[0] for row in await cur.fetchall()}
            for version, script in sql.migrations("postgresql"):
                if version not in done:
                    await cur.execute(script.encode())
                    await cur.execute(
                        "INSERT INTO schema_migrations (version) VALUES (%s)", (version,)
                    )

        await self._tx(run)

    async def ping(self) -> None:
        async def run(cur: psycopg.AsyncCursor[Any]) -> None:
            await cur.execute("SELECT 1")

        await self._tx(run, timeout=2.0)  # a probe answers fast, even when the database is away

    async def close(self) -> None:
        if self._opened:
            await self._pool.close()
            self._opened = False

    # tasks -----------------------------------------------------------------

    async def create_task(self, task: Task) -> None:
        async def run(cur: psycopg.AsyncCursor[Any]) -> None:
            await cur.execute(_Q["insert_task"], sql.task_params(task))
            await cur.execute(_Q["insert_event"], sql.event_params(task, "created"))
            await cur.execute(_NOTIFY)  # delivered to listening workers on commit

        await self._tx(run)

    async def get_task(self, task_id: str) -> Task | None:
        rows = await self._rows(_Q["select_task"], {"id": task_id})
        return sql.task_from_row(rows[0]) if rows else None

    async def claim_task(
        self,
        *,
        worker: str,
        now: float,
        lease_seconds: float,
        max_attempts: int,
        models: Collection[str] | None = None,
    ) -> Task | None:
        params = {
            "worker": worker,
            "now": now,
            "lease_until": now + lease_seconds,
            "max_attempts": max_attempts,
            "models": list(models or ()),
        }

        async def run(cur: psycopg.AsyncCursor[Any]) -> Task | None:
            await cur.execute(_CLAIM[models is not None], params)
            row = await cur.fetchone()
            if row is None:
                return None
            task = sql.task_from_row(row)
            await cur.execute(
                _Q["insert_event"], sql.event_params(task, f"attempt {task.attempts}")
            )
            return task

        return await self._tx(run)

    async def heartbeat(
        self, task_id: str, *, worker: str, now: float, lease_seconds: float, progress: int
    ) -> Task:
        params = sql.lease_params(
            task_id, worker, now, lease_until=now + lease_seconds, progress=progress
        )
        return await self._leased(_Q["heartbeat"], params, record=False)

    async def finish_task(
        self,
        task_id: str,
        *,
        worker: str,
        now: float,
        status: Status,
        output_key: str | None = None,
        error_code: str | None = None,
        error_message: str | None = None,
    ) -> Task:
        check_terminal(status)
        params = sql.lease_params(
            task_id, worker, now, status=status.value, output_key=output_key,
            error_code=error_code, error_message=error_message,
        )  # fmt: skip
        return await self._leased(_Q["finish"], params, detail=error_code)

    async def release_task(self, task_id: str, *, worker: str, now: float) -> Task:
        params = sql.lease_params(task_id, worker, now)
        return await self._leased(_Q["release"], params, detail="released", notify=True)

    async def _leased(
        self, statement: str, params: dict[str, Any], *, detail: str | None = None,
        record: bool = True, notify: bool = False,
    ) -> Task:  # fmt: skip
        """Run a conditional update on a leased task; ``LeaseLost`` when it matched nothing."""

        async def run(cur: psycopg.AsyncCursor[Any]) -> Task:
            await cur.execute(statement, params)
            row = await cur.fetchone()
            if row is None:
                raise LeaseLost(f"worker {params['worker']} no longer holds task {params['id']}")
            task = sql.task_from_row(row)
            if record:
                await cur.execute(_Q["insert_event"], sql.event_params(task, detail))
            if notify:  # the task is claimable again: wake a worker
                await cur.execute(_NOTIFY)
            return task

        return await self._tx(run)

    async def expire_tasks(self, *, now: float, max_attempts: int) -> list[Task]:
        async def run(cur: psycopg.AsyncCursor[Any]) -> list[Task]:
            await cur.execute(_Q["expire"], {"now": now, "max_attempts": max_attempts})
            tasks = [sql.task_from_row(row) for row in await cur.fetchall()]
            for task in tasks:
                await cur.execute(_Q["insert_event"], sql.event_params(task, task.error_code))
            return tasks

        return await self._tx(run)

    async def list_events(self, task_id: str) -> list[Event]:
        rows = await self._rows(_Q["select_events"], {"task_id": task_id})
        return [sql.event_from_row(row) for row in rows]

    # keys ------------------------------------------------------------------

    async def add_key(self, key: ApiKey) -> None:
        async def run(cur: psycopg.AsyncCursor[Any]) -> None:
            await cur.execute(_Q["insert_key"], dict(sql.key_params(key)))

        await self._tx(run)

    async def key_by_hash(self, key_hash: str) -> ApiKey | None:
        rows = await self._rows(_Q["key_by_hash"], {"key_hash": key_hash})
        return sql.key_from_row(rows[0]) if rows else None

    async def list_keys(self) -> list[ApiKey]:
        return [sql.key_from_row(row) for row in await self._rows(_Q["keys"], {})]

    async def revoke_key(self, key_id: str, *, now: float) -> ApiKey:
        rows = await self._rows(_Q["revoke_key"], {"id": key_id, "now": now})
        if not rows:
            raise NotFound(f"no API key with id {key_id!r}")
        return sql.key_from_row(rows[0])
