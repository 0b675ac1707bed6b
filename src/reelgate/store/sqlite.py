"""The SQLite task store: the embedded default, one machine, WAL mode.

Reads run on the caller's thread over a per-thread connection (WAL readers
never wait for the writer). Writes run on one writer thread with its own
connection, each in ``BEGIN IMMEDIATE`` with ``synchronous=FULL``, so that a
task is on disk before its create is acknowledged, and so that several
processes sharing the file serialise their claims.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

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
from reelgate.domain.progress import progress_stepped
from reelgate.domain.quotas import Limits
from reelgate.domain.routing import assign, first_free
from reelgate.domain.status import Phase, Status, check_terminal
from reelgate.domain.task import ApiKey, Event, Task
from reelgate.ports import Claimed, Move
from reelgate.store import sql
from reelgate.store.hooks_sqlite import SqliteHooks
from reelgate.store.quotas_sqlite import SqliteQuotas, admit
from reelgate.store.retention import SqliteRetention

T = TypeVar("T")
log = logging.getLogger("reelgate.store")

# Every foreign error a store call may raise -> the domain error it becomes. The most
# specific class wins (MRO order); ``convert`` applies the table, in ``_write`` and
# ``_read``. The driver's detail goes to the log only, never into the domain message.
ERRORS: dict[type[Exception], type[ReelgateError]] = {
    sqlite3.Error: Unavailable,
    sqlite3.Warning: Unavailable,
    sqlite3.InterfaceError: Unavailable,  # the driver was misused: a server fault
    sqlite3.DatabaseError: Unavailable,  # e.g. the file is not a database
    sqlite3.OperationalError: Unavailable,  # locked, busy, disk I/O, cannot open
    sqlite3.InternalError: Unavailable,
    sqlite3.ProgrammingError: Unavailable,  # a closed connection, a bad statement
    sqlite3.NotSupportedError: Unavailable,
    sqlite3.IntegrityError: Conflict,  # a duplicate id or key, a broken reference
    sqlite3.DataError: InvalidParameter,  # a value out of SQLite's range (too big)
    OverflowError: InvalidParameter,  # an integer beyond SQLite's 64 bits
    UnicodeEncodeError: InvalidParameter,  # text UTF-8 cannot carry (a lone surrogate)
    OSError: Unavailable,  # the database's folder cannot be made
}


def convert(exc: Exception) -> ReelgateError | None:
    """The domain error for a foreign ``exc`` (None when ``ERRORS`` has no class of it)."""
    return sql.convert(ERRORS, "sqlite", exc)


_PICK = """SELECT id FROM tasks WHERE {claimable}{models}
ORDER BY created_at LIMIT :limit"""


_HEARTBEAT = sql.HEARTBEAT.format(greatest="MAX")
_PROGRESS = "SELECT progress FROM tasks WHERE id = :id"
_RECORD_MIGRATION = (
    "INSERT INTO schema_migrations VALUES (?, (julianday('now') - 2440587.5) * 86400.0)"
)


_LOCKED_PAUSE = 0.01  # seconds between tries of a statement SQLite found locked


class SqliteStore(SqliteHooks, SqliteRetention, SqliteQuotas):
    """``TaskStore`` over one SQLite file."""

    def __init__(self, path: str | Path, *, busy_timeout_ms: int = 30_000) -> None:
        self.path = Path(path)
        self._busy_timeout_ms = busy_timeout_ms
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-writer")

    # connections -----------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            conn.execute(f"PRAGMA busy_timeout = {self._busy_timeout_ms}")
            self._patiently(conn, "PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = FULL")
            conn.execute("PRAGMA foreign_keys = ON")
            self._local.conn = conn
            with self._lock:
                self._connections.append(conn)
        return conn

    def _patiently(self, conn: sqlite3.Connection, statement: str) -> None:
        """Run ``statement``, waiting up to the busy timeout while the file is locked.

        SQLite answers some locks at once, without its busy handler: processes that
        open a new file together (one switches it to WAL, another reads its first
        page), or a WAL being recovered. Seen as "database is locked" when several
        API processes start on a fresh data folder; here they wait like for any lock.
        """
        deadline = time.monotonic() + self._busy_timeout_ms / 1000
        while True:
            try:
                conn.execute(statement)
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() >= deadline:
                    raise
            time.sleep(_LOCKED_PAUSE)

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        conn = self._connect()
        self._patiently(conn, "BEGIN IMMEDIATE")
        try:
            yield conn
            conn.execute("COMMIT")
        finally:
            if conn.in_transaction:
                conn.execute("ROLLBACK")

    async def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        def run() -> T:
            with self._transaction() as conn:
                return fn(conn)

        try:
            return await asyncio.get_running_loop().run_in_executor(self._writer, run)
        except Exception as exc:
            converted = convert(exc)
            if converted is None:
                raise
            raise converted from exc

    def _read(self, statement: str, params: dict[str, Any]) -> list[Any]:
        if not sql.storable(params):  # no stored row holds such text: a lookup finds nothing
            return []
        try:
            return self._connect().execute(statement, params).fetchall()
        except Exception as exc:
            converted = convert(exc)
            if converted is None:
                raise
            raise converted from exc

    # lifecycle -------------------------------------------------------------

    async def migrate(self) -> None:
        def run(conn: sqlite3.Connection) -> None:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations "
                "(version INTEGER PRIMARY KEY, applied_at REAL NOT NULL)"
            )
            done = {row[0] for row in conn.execute("SELECT version FROM schema_migrations")}
            for version, script in sql.migrations("sqlite"):
                if version in done:
                    continue
                for statement in _statements(script):
                    conn.execute(statement)
                conn.execute(_RECORD_MIGRATION, (version,))

        await self._write(run)

    async def ping(self) -> None:
        self._read("SELECT 1", {})

    async def check_writes(self, *, min_free_bytes: int = 0) -> None:
        """Raise ``Unavailable`` unless the database's folder takes a small write (the WAL
        and its index grow there) with at least ``min_free_bytes`` free."""
        await asyncio.to_thread(_probe_folder, self.path.parent, min_free_bytes)

    async def close(self) -> None:
        self._writer.shutdown(wait=True)
        with self._lock:
            for conn in self._connections:
                conn.close()
            self._connections.clear()

    # tasks -----------------------------------------------------------------

    async def create_task(self, task: Task, limits: Limits | None = None) -> None:
        def run(conn: sqlite3.Connection) -> None:
            if limits is not None and not limits.unlimited:
                admit(conn, task, limits)
            conn.execute(sql.INSERT_TASK, sql.task_params(task))
            conn.execute(sql.INSERT_EVENT, sql.event_params(task, "created"))

        await self._write(run)

    async def get_task(self, task_id: str) -> Task | None:
        rows = self._read(sql.SELECT_TASK, {"id": task_id})
        return sql.task_from_row(rows[0]) if rows else None

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
        models_sql = (
            "" if models is None else " AND model IN (SELECT value FROM json_each(:models))"
        )
        pick = _PICK.format(claimable=sql.CLAIMABLE, models=models_sql)
        statement = sql.CLAIM.format(
            chosen=f"id IN ({pick})", claimable=sql.CLAIMABLE, columns=sql.TASK_COLUMNS
        )
        params = {
            "worker": worker,
            "now": now,
            "lease_until": now + lease_seconds,
            "max_attempts": max_attempts,
            "models": json.dumps(list(models or ())),
            "limit": limit,
        }

        def run(conn: sqlite3.Connection) -> list[Task]:
            tasks = [sql.task_from_row(row) for row in conn.execute(statement, params)]
            for task in tasks:
                conn.execute(sql.INSERT_EVENT, sql.event_params(task, f"attempt {task.attempts}"))
            return sorted(tasks, key=lambda t: t.created_at)

        return await self._write(run)

    async def heartbeat(
        self, task_id: str, *, worker: str, now: float, lease_seconds: float, progress: int
    ) -> Task:
        params = sql.lease_params(
            task_id, worker, now, lease_until=now + lease_seconds, progress=progress
        )

        def run(conn: sqlite3.Connection) -> Task:
            before = conn.execute(_PROGRESS, params).fetchone()
            row = conn.execute(_HEARTBEAT, params).fetchone()
            if row is None:
                raise LeaseLost(f"worker {worker} no longer holds task {task_id}")
            task = sql.task_from_row(row)
            if before is not None and progress_stepped(before[0], task.progress):
                conn.execute(sql.INSERT_EVENT, sql.event_params(task, "progress"))
            return task

        return await self._write(run)

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
        return await self._leased(sql.FINISH, params, detail=error_code)

    async def release_task(self, task_id: str, *, worker: str, now: float) -> Task:
        params = sql.lease_params(task_id, worker, now)
        return await self._leased(sql.RELEASE, params, detail="released")

    async def _leased(
        self,
        statement: str,
        params: dict[str, Any],
        *,
        detail: str | None = None,
        record: bool = True,
    ) -> Task:
        """Run a conditional update on a leased task; ``LeaseLost`` when it matched nothing."""

        def run(conn: sqlite3.Connection) -> Task:
            row = conn.execute(statement, params).fetchone()
            if row is None:
                raise LeaseLost(f"worker {params['worker']} no longer holds task {params['id']}")
            task = sql.task_from_row(row)
            if record:
                conn.execute(sql.INSERT_EVENT, sql.event_params(task, detail))
            return task

        return await self._write(run)

    async def expire_tasks(self, *, now: float, max_attempts: int) -> list[Task]:
        def run(conn: sqlite3.Connection) -> list[Task]:
            rows = conn.execute(sql.EXPIRE, {"now": now, "max_attempts": max_attempts})
            tasks = [sql.task_from_row(row) for row in rows.fetchall()]
            for task in tasks:
                conn.execute(sql.INSERT_EVENT, sql.event_params(task, task.error_code))
            return tasks

        return await self._write(run)

    async def list_events(self, task_id: str) -> list[Event]:
        rows = self._read(sql.SELECT_EVENTS, {"task_id": task_id})
        return [sql.event_from_row(row) for row in rows]

    async def events_after(self, task_id: str, after: int, *, limit: int = 100) -> list[Event]:
        params = {"task_id": task_id, "after": after, "limit": limit}
        return [sql.event_from_row(row) for row in self._read(sql.SELECT_EVENTS_AFTER, params)]

    async def event_feed(self, after: int, *, limit: int = 1000) -> list[tuple[int, str]]:
        rows = self._read(sql.SELECT_EVENT_FEED, {"after": after, "limit": limit})
        return [(seq, task_id) for seq, task_id in rows]

    async def last_event(self) -> int:
        return int(self._read(sql.SELECT_LAST_EVENT, {})[0][0])

    async def queue_depth(self) -> dict[Phase, int]:
        return {Phase(phase): int(count) for phase, count in self._read(sql.QUEUE_DEPTH, {})}

    async def list_tasks(self, owner: str, query: ListQuery, cursor: Cursor | None = None) -> Page:
        statement, params = sql.list_statement(owner, query, cursor)
        return page_of(
            [sql.task_from_row(row) for row in self._read(statement, params)], query.limit
        )

    # remote tasks ------------------------------------------------------------

    async def move(self, move: Move) -> Task:
        return await self._write(lambda conn: _move(conn, move))

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
        candidates = sql.SUBMIT_CANDIDATES.format(models=_MODELS)

        def run(conn: sqlite3.Connection) -> list[Claimed]:
            # BEGIN IMMEDIATE holds the one write lock: submitters never count together.
            in_flight = sql.in_flight_from_rows(conn.execute(sql.IN_FLIGHT).fetchall())
            params = {
                "now": now,
                "models": json.dumps(sql.open_models(routes, in_flight, caps)),
                "limit": limit * 4 + 16,
            }
            rows = [sql.candidate_from_row(row) for row in conn.execute(candidates, params)]
            claimed = []
            for pick in assign(rows, in_flight, routes, caps, limit):
                move = sql.intent_move(pick, worker=worker, now=now, lease_seconds=lease_seconds)
                claimed.append(Claimed(_move(conn, move), pick.lost))
            return claimed

        return await self._write(run)

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
        def run(conn: sqlite3.Connection) -> Task | None:
            in_flight = sql.in_flight_from_rows(conn.execute(sql.IN_FLIGHT).fetchall())
            route = first_free(routes, in_flight, caps, tried)
            if route is None:
                return None
            return _move(conn, sql.reroute_move(task_id, route, worker=worker, now=now))

        return await self._write(run)

    async def claim_watch(self, *, poller: str, now: float, limit: int) -> list[Task]:
        statement = sql.CLAIM_WATCH.format(lock="")
        params = {"poller": poller, "now": now, "limit": limit}

        def run(conn: sqlite3.Connection) -> list[Task]:
            return [sql.task_from_row(row) for row in conn.execute(statement, params)]

        return await self._write(run)

    async def beat_poller(self, poller: str, *, now: float, alive_until: float) -> None:
        params = {"poller": poller, "alive_until": alive_until}
        await self._write(lambda conn: conn.execute(sql.BEAT_POLLER, params))

    async def list_pollers(self) -> list[tuple[str, float]]:
        return [(str(id_), float(until)) for id_, until in self._read(sql.SELECT_POLLERS, {})]

    async def drop_poller(self, poller: str, *, now: float) -> None:
        def run(conn: sqlite3.Connection) -> None:
            conn.execute(sql.RELEASE_WATCHED, {"poller": poller})
            conn.execute(sql.DROP_POLLER, {"poller": poller, "forgotten": now - 86400})

        await self._write(run)

    async def upstream_ids(self, provider: str, *, since: float) -> set[str]:
        rows = self._read(sql.UPSTREAM_IDS, {"provider": provider, "since": since})
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
        rows = self._read(sql.SELECT_DURATION, params)
        return float(rows[0][0]) if rows else None

    async def learn_duration(
        self, provider: str, model: str, seconds: int, resolution: str, took: float
    ) -> None:
        params = sql.learn_params(provider, model, seconds, resolution, took)
        await self._write(lambda conn: conn.execute(sql.LEARN_DURATION, params))

    # cancel and delete -----------------------------------------------------

    async def cancel_task(self, task_id: str, *, now: float) -> Task:
        move = sql.cancel_move(task_id, now)

        def run(conn: sqlite3.Connection) -> Task:
            task = _move(conn, move)
            conn.execute(sql.INSERT_CANCEL, {"m_id": task_id, "m_now": now})
            conn.execute(sql.PRUNE_CANCELS, {"forgotten": now - sql.CANCEL_LOG_SECONDS})
            return task

        return await self._write(run)

    async def cancelled_since(self, since: float) -> list[str]:
        return [row[0] for row in self._read(sql.SELECT_CANCELS, {"since": since})]

    async def delete_task(self, task_id: str) -> bool:
        def run(conn: sqlite3.Connection) -> bool:
            for statement in (sql.DELETE_EVENTS, sql.DELETE_TASK_KEYS, sql.DELETE_TASK_CALLBACK):
                conn.execute(statement, {"id": task_id})
            return conn.execute(sql.DELETE_TASK, {"id": task_id}).fetchone() is not None

        return await self._write(run)

    # keys ------------------------------------------------------------------

    async def add_key(self, key: ApiKey) -> None:
        await self._write(lambda conn: conn.execute(sql.INSERT_KEY, sql.key_params(key)))

    async def key_by_hash(self, key_hash: str) -> ApiKey | None:
        rows = self._read(sql.SELECT_KEY_BY_HASH, {"key_hash": key_hash})
        return sql.key_from_row(rows[0]) if rows else None

    async def list_keys(self) -> list[ApiKey]:
        return [sql.key_from_row(row) for row in self._read(sql.SELECT_KEYS, {})]

    async def revoke_key(self, key_id: str, *, now: float) -> ApiKey:
        def run(conn: sqlite3.Connection) -> ApiKey:
            row = conn.execute(sql.REVOKE_KEY, {"id": key_id, "now": now}).fetchone()
            if row is None:
                raise NotFound(f"no API key with id {key_id!r}")
            return sql.key_from_row(row)

        return await self._write(run)


_MODELS = "SELECT value FROM json_each(:models)"


def _move(conn: sqlite3.Connection, move: Move) -> Task:
    statement, params = sql.move_statement(move, greatest="MAX")
    row = conn.execute(statement, params).fetchone()
    if row is None:
        raise IllegalTransition(
            f"task {move.task_id} is not in phase {'/'.join(sorted(move.source))}"
            + (f" held by {move.holder[1]}" if move.holder else "")
        )
    task = sql.task_from_row(row)
    if move.record:
        conn.execute(sql.INSERT_EVENT, sql.event_params(task, move.detail))
    return task


def _probe_folder(folder: Path, min_free_bytes: int) -> None:
    probe = folder / f".reelgate-probe-{os.getpid()}-{secrets.token_hex(4)}"
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, b"\0" * 512)
            os.fsync(fd)
        finally:
            os.close(fd)
            probe.unlink(missing_ok=True)
        stats = os.statvfs(folder)
    except OSError as exc:
        raise Unavailable(f"sqlite: the database folder {folder} takes no writes: {exc}") from exc
    free = stats.f_bavail * stats.f_frsize
    if free < min_free_bytes:
        raise Unavailable(
            f"sqlite: the database folder {folder} has {free} bytes free, "
            f"less than REELGATE_MIN_FREE_BYTES ({min_free_bytes})"
        )


def _statements(script: str) -> list[str]:
    """The statements of ``script``; a trigger's body (``BEGIN … END;``) stays whole."""
    lines = [line for line in script.splitlines() if not line.lstrip().startswith("--")]
    statements, pending = [], ""
    for part in "\n".join(lines).split(";"):
        pending += part + ";"
        if sqlite3.complete_statement(pending):
            if pending.strip(" \n;"):
                statements.append(pending.strip().removesuffix(";").strip())
            pending = ""
    return statements
