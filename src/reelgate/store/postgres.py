"""The PostgreSQL task store: several API and worker processes on several machines.

Claims use ``FOR UPDATE SKIP LOCKED`` so that concurrent workers never wait on
each other; migrations hold an advisory lock so that processes starting
together apply each script once. Connection failures become ``Unavailable``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import AsyncIterator, Callable, Collection, Mapping, Sequence
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from reelgate.domain.errors import (
    Conflict,
    IllegalTransition,
    InvalidParameter,
    LeaseLost,
    NotFound,
    ReelgateError,
    Unavailable,
)
from reelgate.domain.listing import Cursor, ListQuery, Page, page_of
from reelgate.domain.progress import PROGRESS_STEP
from reelgate.domain.quotas import Limits
from reelgate.domain.routing import assign, first_free
from reelgate.domain.status import Phase, Status, check_terminal
from reelgate.domain.task import ApiKey, Event, Task
from reelgate.ports import Claimed, Move
from reelgate.store import sql
from reelgate.store.hooks_postgres import PostgresHooks
from reelgate.store.quotas_postgres import PostgresQuotas, admit
from reelgate.store.retention import PostgresRetention

log = logging.getLogger("reelgate.store")
_MIGRATION_LOCK = 0x7265656C  # "reel"
CHANNEL = "reelgate_tasks"
EVENTS_CHANNEL = "reelgate_events"  # migration 0004's trigger: one task id per event

_PICK = """SELECT id FROM tasks WHERE {claimable}{models}
ORDER BY created_at LIMIT :limit FOR UPDATE SKIP LOCKED"""


def _recorded(change: str, detail: str, *, notify: bool = False) -> str:
    """``change`` (… RETURNING the task columns) as one statement that records its events.

    One statement is one transaction in autocommit mode: one round trip per write.
    ``notify`` adds a NOTIFY, delivered to listening workers on commit.
    """
    extra = f", pg_notify('{CHANNEL}', :origin)" if notify else ""
    return sql.for_psycopg(f"""
WITH t AS ({change}),
e AS (INSERT INTO task_events (task_id, at, status, progress, detail)
      SELECT id, updated_at, status, progress, {detail} FROM t)
SELECT {sql.TASK_COLUMNS}{extra} FROM t""")


def _claim_sql(filtered: bool) -> str:
    models = " AND model = ANY(:models)" if filtered else ""
    pick = _PICK.format(claimable=sql.CLAIMABLE, models=models)
    text = sql.CLAIM.format(
        chosen=f"id = ANY(ARRAY({pick}))", claimable=sql.CLAIMABLE, columns=sql.TASK_COLUMNS
    )
    return _recorded(text, "'attempt ' || attempts")


_Q = {
    "create": _recorded(
        f"{sql.INSERT_TASK} RETURNING {sql.TASK_COLUMNS}", "'created'", notify=True
    ),
    "claim": _claim_sql(False),
    "claim_models": _claim_sql(True),
    "heartbeat": sql.for_psycopg(f"""
WITH b AS (SELECT progress FROM tasks WHERE id = :id),
t AS ({sql.HEARTBEAT.format(greatest="GREATEST")}),
e AS (INSERT INTO task_events (task_id, at, status, progress, detail)
      SELECT t.id, t.updated_at, t.status, t.progress, 'progress' FROM t, b
      WHERE t.progress / {PROGRESS_STEP} > b.progress / {PROGRESS_STEP})
SELECT {sql.TASK_COLUMNS} FROM t"""),
    "finish": _recorded(sql.FINISH, "error_code"),
    "release": _recorded(sql.RELEASE, "'released'", notify=True),
    "expire": _recorded(sql.EXPIRE, "error_code"),
    **{
        name: sql.for_psycopg(text)
        for name, text in {
            "select_task": sql.SELECT_TASK,
            "select_events": sql.SELECT_EVENTS,
            "events_after": sql.SELECT_EVENTS_AFTER,
            "event_feed": sql.SELECT_EVENT_FEED,
            "last_event": sql.SELECT_LAST_EVENT,
            "insert_key": sql.INSERT_KEY,
            "key_by_hash": sql.SELECT_KEY_BY_HASH,
            "keys": sql.SELECT_KEYS,
            "revoke_key": sql.REVOKE_KEY,
            "in_flight": sql.IN_FLIGHT,
            "submit_candidates": sql.SUBMIT_CANDIDATES.format(
                models="SELECT unnest(CAST(:models AS text[]))"
            ),
            "claim_watch": sql.CLAIM_WATCH.format(lock=" FOR UPDATE SKIP LOCKED"),
            "beat_poller": sql.BEAT_POLLER,
            "release_watched": sql.RELEASE_WATCHED,
            "drop_poller": sql.DROP_POLLER,
            "upstream_ids": sql.UPSTREAM_IDS,
            "select_duration": sql.SELECT_DURATION,
            "learn_duration": sql.LEARN_DURATION,
            "cancels": sql.SELECT_CANCELS,
            "delete_events": sql.DELETE_EVENTS,
            "delete_task_keys": sql.DELETE_TASK_KEYS,
            "delete_task_callback": sql.DELETE_TASK_CALLBACK,
            "delete_task": sql.DELETE_TASK,
        }.items()
    },
}
_READ_ONLY = (
    "SELECT pg_is_in_recovery() OR current_setting('transaction_read_only') = 'on'"
    " OR current_setting('default_transaction_read_only') = 'on'"
)
_SUBMIT_LOCK = 0x7265656D  # submitters count the tasks in flight one at a time

# Every foreign error a store call may raise -> the domain error it becomes. The most
# specific class wins (MRO order); ``convert`` applies the table, in ``_connection``
# (which every call goes through). The driver's detail goes to the log only.
ERRORS: dict[type[Exception], type[ReelgateError]] = {
    psycopg.Error: Unavailable,
    psycopg.Warning: Unavailable,
    psycopg.InterfaceError: Unavailable,  # the connection is closed or broken
    psycopg.DatabaseError: Unavailable,
    psycopg.OperationalError: Unavailable,  # connection lost, query cancelled, deadlock
    psycopg.errors.AdminShutdown: Unavailable,  # the server is shutting down
    PoolTimeout: Unavailable,  # the pool found no working connection in time
    TimeoutError: Unavailable,
    psycopg.InternalError: Unavailable,
    psycopg.ProgrammingError: Unavailable,  # a bad statement: a server fault
    psycopg.NotSupportedError: Unavailable,
    psycopg.IntegrityError: Conflict,  # a broken reference or constraint
    psycopg.errors.UniqueViolation: Conflict,  # a duplicate id or key
    psycopg.DataError: InvalidParameter,  # NUL in text, a number out of range
    UnicodeEncodeError: InvalidParameter,  # text UTF-8 cannot carry (a lone surrogate)
}


def convert(exc: Exception) -> ReelgateError | None:
    """The domain error for a foreign ``exc`` (None when ``ERRORS`` has no class of it)."""
    return sql.convert(ERRORS, "postgresql", exc)


def _lookup(statement: str) -> bool:
    return statement.lstrip()[:6].upper() == "SELECT"


async def _fetch(conn: Any, statement: str, params: Mapping[str, Any]) -> list[Any]:
    cursor = await conn.execute(statement, params)
    return await cursor.fetchall() if cursor.description else []


async def _move(conn: Any, move: Move) -> Task:
    statement, params = sql.move_statement(move, greatest="GREATEST")
    text = _recorded(statement, ":m_detail") if move.record else sql.for_psycopg(statement)
    rows = await _fetch(conn, text, params)
    if not rows:
        raise IllegalTransition(
            f"task {move.task_id} is not in phase {'/'.join(sorted(move.source))}"
            + (f" held by {move.holder[1]}" if move.holder else "")
        )
    return sql.task_from_row(rows[0][:_WIDTH])


_WIDTH = len(sql.TASK_COLUMNS.split(","))


def _cancel_sql(move: str) -> str:
    """The cancel ``move`` as one statement that records its event, logs the cancel for
    ``cancelled_since`` and prunes the log."""
    return sql.for_psycopg(f"""
WITH t AS ({move}),
e AS (INSERT INTO task_events (task_id, at, status, progress, detail)
      SELECT id, updated_at, status, progress, :m_detail FROM t),
c AS (INSERT INTO cancels (task_id, at) SELECT id, updated_at FROM t),
p AS (DELETE FROM cancels WHERE at < :forgotten)
SELECT {sql.TASK_COLUMNS} FROM t""")


class PostgresListener:
    """Calls ``wake`` whenever a task becomes claimable, through LISTEN/NOTIFY.

    Reconnects with backoff when the connection drops; workers keep a slow
    fallback poll in case a notification is missed meanwhile.
    """

    def __init__(self, url: str, *, origin: str = "") -> None:
        self.url = url
        self.origin = origin  # notifications from this origin are skipped

    async def run(self, wake: Callable[[], None]) -> None:
        """Listen until cancelled."""
        delay = 0.5
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(self.url, autocommit=True) as conn:
                    await conn.execute(f"LISTEN {CHANNEL}")
                    delay = 0.5
                    wake()  # a notification may have been missed while away
                    async for notification in conn.notifies():
                        if not self.origin or notification.payload != self.origin:
                            wake()
            except psycopg.Error as exc:
                log.warning("LISTEN %s: %s; reconnecting in %.1fs", CHANNEL, exc, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)


class PostgresEventListener:
    """Tells an API process which tasks got events, through LISTEN on ``EVENTS_CHANNEL``.

    Migration 0004's trigger notifies every recorded event's task id at commit. After
    each (re)connection it reports ``None`` (any task may have changed meanwhile).
    """

    def __init__(self, url: str) -> None:
        self.url = url

    async def run(self, changed: Callable[[str | None], None]) -> None:
        """Listen until cancelled."""
        delay = 0.5
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(self.url, autocommit=True) as conn:
                    await conn.execute(f"LISTEN {EVENTS_CHANNEL}")
                    delay = 0.5
                    changed(None)
                    async for notification in conn.notifies():
                        changed(notification.payload)
            except psycopg.Error as exc:
                log.warning("LISTEN %s: %s; reconnecting in %.1fs", EVENTS_CHANNEL, exc, delay)
            changed(None)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)


class PostgresStore(PostgresHooks, PostgresRetention, PostgresQuotas):
    """``TaskStore`` over a PostgreSQL database, through a connection pool.

    Connections run in autocommit mode: reads are one round trip, and every write
    is one statement (its events recorded by a data-modifying CTE), so it is its
    own transaction. Only migrations use an explicit transaction.
    """

    def __init__(self, url: str, *, min_size: int = 1, max_size: int = 10) -> None:
        self.url = url
        # Sent with each notification, so that the listener of the same process can
        # skip what the process's local wake-up has already delivered.
        self.origin = secrets.token_hex(8)
        self._pool = AsyncConnectionPool(
            url,
            min_size=min_size,
            max_size=max_size,
            open=False,
            timeout=5.0,
            kwargs={"autocommit": True},
        )
        self._opened = False

    @contextlib.asynccontextmanager
    async def _connection(self, timeout: float | None = None) -> AsyncIterator[Any]:
        try:
            if not self._opened:
                await self._pool.open()
                self._opened = True
            async with self._pool.connection(timeout=timeout) as conn:
                yield conn
        except Exception as exc:
            converted = convert(exc)
            if converted is None:
                raise
            raise converted from exc

    async def _rows(
        self, statement: str, params: Mapping[str, Any], timeout: float | None = None
    ) -> list[Any]:
        if _lookup(statement) and not sql.storable(params):
            return []  # no stored row holds such text: a lookup by it finds nothing
        async with self._connection(timeout) as conn:
            cursor = await conn.execute(statement, params)
            return await cursor.fetchall() if cursor.description else []

    async def _tasks(self, statement: str, params: Mapping[str, Any]) -> list[Task]:
        return [sql.task_from_row(row[:_WIDTH]) for row in await self._rows(statement, params)]

    # lifecycle -------------------------------------------------------------

    async def migrate(self) -> None:
        async with self._connection() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations "
                "(version INTEGER PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
            )
            cursor = await conn.execute("SELECT version FROM schema_migrations")
            done = {row[0] for row in await cursor.fetchall()}
            for version, script in sql.migrations("postgresql"):
                if version not in done:
                    await conn.execute(script.encode())
                    await conn.execute(
                        "INSERT INTO schema_migrations (version) VALUES (%s)", (version,)
                    )

    async def ping(self) -> None:
        await self._rows("SELECT 1", {}, timeout=2.0)  # a probe answers fast, even when away

    async def check_writes(self, *, min_free_bytes: int = 0) -> None:
        """Raise ``Unavailable`` when the server takes no writes (a replica, read-only).

        The server's free space is its own to watch: ``min_free_bytes`` is not checked.
        """
        rows = await self._rows(_READ_ONLY, {}, timeout=2.0)
        if rows and rows[0][0]:
            raise Unavailable("postgresql: the database is read-only (recovery or read-only mode)")

    async def close(self) -> None:
        if self._opened:
            await self._pool.close()
            self._opened = False

    # tasks -----------------------------------------------------------------

    async def create_task(self, task: Task, limits: Limits | None = None) -> None:
        params = {**sql.task_params(task), "origin": self.origin}
        if limits is None or limits.unlimited:
            await self._rows(_Q["create"], params)
            return
        async with self._connection() as conn, conn.transaction():
            await admit(conn, task, limits)
            await conn.execute(_Q["create"], params)

    async def get_task(self, task_id: str) -> Task | None:
        tasks = await self._tasks(_Q["select_task"], {"id": task_id})
        return tasks[0] if tasks else None

    async def claim_tasks(
        self,
        *,
        worker: str,
        now: float,
        lease_seconds: float,
        max_attempts: int,
        models: Collection[str] | None = None,
        limit: int = 1,
    ) -> list[Task]:
        params = {
            "worker": worker,
            "now": now,
            "lease_until": now + lease_seconds,
            "max_attempts": max_attempts,
            "models": list(models or ()),
            "limit": limit,
        }
        tasks = await self._tasks(_Q["claim" if models is None else "claim_models"], params)
        return sorted(tasks, key=lambda t: t.created_at)

    async def heartbeat(
        self, task_id: str, *, worker: str, now: float, lease_seconds: float, progress: int
    ) -> Task:
        params = sql.lease_params(
            task_id, worker, now, lease_until=now + lease_seconds, progress=progress
        )
        return await self._leased(_Q["heartbeat"], params)

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
        output_bytes: int | None = None,
    ) -> Task:
        check_terminal(status)
        params = sql.lease_params(
            task_id,
            worker,
            now,
            status=status.value,
            output_key=output_key,
            error_code=error_code,
            error_message=error_message,
            output_bytes=output_bytes,
        )
        return await self._leased(_Q["finish"], params)

    async def release_task(self, task_id: str, *, worker: str, now: float) -> Task:
        params = sql.lease_params(task_id, worker, now, origin=self.origin)
        return await self._leased(_Q["release"], params)

    async def _leased(self, statement: str, params: dict[str, Any]) -> Task:
        """Run a conditional update on a leased task; ``LeaseLost`` when it matched nothing."""
        tasks = await self._tasks(statement, params)
        if not tasks:
            raise LeaseLost(f"worker {params['worker']} no longer holds task {params['id']}")
        return tasks[0]

    async def expire_tasks(self, *, now: float, max_attempts: int) -> list[Task]:
        return await self._tasks(_Q["expire"], {"now": now, "max_attempts": max_attempts})

    async def list_events(self, task_id: str) -> list[Event]:
        rows = await self._rows(_Q["select_events"], {"task_id": task_id})
        return [sql.event_from_row(row) for row in rows]

    async def events_after(self, task_id: str, after: int, *, limit: int = 100) -> list[Event]:
        params = {"task_id": task_id, "after": after, "limit": limit}
        return [sql.event_from_row(row) for row in await self._rows(_Q["events_after"], params)]

    async def event_feed(self, after: int, *, limit: int = 1000) -> list[tuple[int, str]]:
        """Events after ``after`` in ``seq`` order; one committed late may carry a lower
        ``seq`` than one already read, so streams here are woken by NOTIFY instead."""
        rows = await self._rows(_Q["event_feed"], {"after": after, "limit": limit})
        return [(seq, task_id) for seq, task_id in rows]

    async def last_event(self) -> int:
        return int((await self._rows(_Q["last_event"], {}))[0][0])

    async def queue_depth(self) -> dict[Phase, int]:
        rows = await self._rows(sql.QUEUE_DEPTH, {})
        return {Phase(phase): int(count) for phase, count in rows}

    async def list_tasks(self, owner: str, query: ListQuery, cursor: Cursor | None = None) -> Page:
        statement, params = sql.list_statement(owner, query, cursor)
        return page_of(await self._tasks(sql.for_psycopg(statement), params), query.limit)

    # remote tasks ------------------------------------------------------------

    async def move(self, move: Move) -> Task:
        async with self._connection() as conn:
            return await _move(conn, move)

    async def claim_submits(
        self,
        *,
        worker: str,
        now: float,
        lease_seconds: float,
        routes: Mapping[str, Sequence[tuple[str, str]]],
        caps: Mapping[str, int],
        limit: int,
    ) -> list[Claimed]:
        async with self._connection() as conn, conn.transaction():
            # One submitter at a time counts and claims, so caps hold across processes.
            await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SUBMIT_LOCK,))
            in_flight = sql.in_flight_from_rows(await _fetch(conn, _Q["in_flight"], {}))
            params = {
                "now": now,
                "models": sql.open_models(routes, in_flight, caps),
                "limit": limit * 4 + 16,
            }
            rows = await _fetch(conn, _Q["submit_candidates"], params)
            candidates = [sql.candidate_from_row(row) for row in rows]
            claimed = []
            for pick in assign(candidates, in_flight, routes, caps, limit):
                move = sql.intent_move(pick, worker=worker, now=now, lease_seconds=lease_seconds)
                claimed.append(Claimed(await _move(conn, move), pick.lost))
            return claimed

    async def reroute_submit(
        self,
        task_id: str,
        *,
        worker: str,
        now: float,
        routes: Sequence[tuple[str, str]],
        tried: Collection[str],
        caps: Mapping[str, int],
    ) -> Task | None:
        async with self._connection() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SUBMIT_LOCK,))
            in_flight = sql.in_flight_from_rows(await _fetch(conn, _Q["in_flight"], {}))
            route = first_free(routes, in_flight, caps, tried)
            if route is None:
                return None
            return await _move(conn, sql.reroute_move(task_id, route, worker=worker, now=now))

    async def claim_watch(self, *, poller: str, now: float, limit: int) -> list[Task]:
        params = {"poller": poller, "now": now, "limit": limit}
        return await self._tasks(_Q["claim_watch"], params)

    async def beat_poller(self, poller: str, *, now: float, alive_until: float) -> None:
        await self._rows(_Q["beat_poller"], {"poller": poller, "alive_until": alive_until})

    async def list_pollers(self) -> list[tuple[str, float]]:
        rows = await self._rows(sql.SELECT_POLLERS, {})
        return [(str(id_), float(until)) for id_, until in rows]

    async def drop_poller(self, poller: str, *, now: float) -> None:
        async with self._connection() as conn, conn.transaction():
            await conn.execute(_Q["release_watched"], {"poller": poller})
            await conn.execute(_Q["drop_poller"], {"poller": poller, "forgotten": now - 86400})

    async def upstream_ids(self, provider: str, *, since: float) -> set[str]:
        rows = await self._rows(_Q["upstream_ids"], {"provider": provider, "since": since})
        return {row[0] for row in rows}

    async def expected_duration(
        self, provider: str, model: str, seconds: int, resolution: str
    ) -> float | None:
        params = {
            "provider": provider,
            "model": model,
            "seconds": seconds,
            "resolution": resolution,
        }
        rows = await self._rows(_Q["select_duration"], params)
        return float(rows[0][0]) if rows else None

    async def learn_duration(
        self, provider: str, model: str, seconds: int, resolution: str, took: float
    ) -> None:
        params = sql.learn_params(provider, model, seconds, resolution, took)
        await self._rows(_Q["learn_duration"], params)

    # cancel and delete -----------------------------------------------------

    async def cancel_task(self, task_id: str, *, now: float) -> Task:
        statement, params = sql.move_statement(sql.cancel_move(task_id, now), greatest="GREATEST")
        params["forgotten"] = now - sql.CANCEL_LOG_SECONDS
        tasks = await self._tasks(_cancel_sql(statement), params)
        if not tasks:
            raise IllegalTransition(f"task {task_id} is finished or unknown: not cancellable")
        return tasks[0]

    async def cancelled_since(self, since: float) -> list[str]:
        return [row[0] for row in await self._rows(_Q["cancels"], {"since": since})]

    async def delete_task(self, task_id: str) -> bool:
        async with self._connection() as conn, conn.transaction():
            for name in ("delete_events", "delete_task_keys", "delete_task_callback"):
                await conn.execute(_Q[name], {"id": task_id})
            return bool(await _fetch(conn, _Q["delete_task"], {"id": task_id}))

    # keys ------------------------------------------------------------------

    async def add_key(self, key: ApiKey) -> None:
        await self._rows(_Q["insert_key"], sql.key_params(key))

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
