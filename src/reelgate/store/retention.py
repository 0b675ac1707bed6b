"""Retention in the stores: storage usage, named leases, and marking files expired.

The SQL (``:name`` parameters, as in ``sql``) and the mixins that give ``SqliteStore``,
``PostgresStore`` and ``MemoryStore`` the retention methods of ``TaskStore``. The
conditions of the partial indexes of migration 0009 (``OUTPUTS_KEPT``, ``INPUTS_KEPT``)
are repeated word for word in every statement that should use them: SQLite's planner
uses a partial index only for a WHERE that contains its condition.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import Collection
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from reelgate.domain.retention import LEASE, FileKind, StorageUsage
from reelgate.domain.status import Phase
from reelgate.domain.task import Task
from reelgate.store import sql
from reelgate.store.mixins import PostgresHost, SqliteHost

OUTPUTS_KEPT = "phase = 'done' AND files_expired_at IS NULL"
INPUTS_KEPT = "input_key IS NOT NULL AND input_expired_at IS NULL"
_KEPT = {FileKind.OUTPUTS: OUTPUTS_KEPT, FileKind.INPUTS: INPUTS_KEPT}
_MARK = {FileKind.OUTPUTS: "files_expired_at", FileKind.INPUTS: "input_expired_at"}
_BYTES = {FileKind.OUTPUTS: "output_bytes", FileKind.INPUTS: "input_bytes"}

# A kind's files kept now: an index-only scan of its partial index (bytes are in it).
USAGE = {
    kind: f"SELECT COUNT({_BYTES[kind]}), COALESCE(SUM({_BYTES[kind]}), 0) FROM tasks "
    f"WHERE {_KEPT[kind]}"
    for kind in FileKind
}

# The oldest finished tasks whose files of a kind are kept and old enough: a range at
# the start of the kind's index. ``phase = 'done'`` keeps a running task's input.
_DUE = "{kept} AND completed_at < :before AND phase = 'done'"
_PICK = "SELECT id FROM tasks WHERE {due} ORDER BY completed_at LIMIT :limit{lock}"
_EXPIRE = """
UPDATE tasks SET {mark} = :now
WHERE {chosen} AND {kept} AND phase = 'done'
    AND EXISTS (SELECT 1 FROM leases WHERE name = :lease AND holder = :holder)
RETURNING {columns}
"""


def expire_statement(kind: FileKind, *, chosen: str, lock: str = "") -> str:
    """The conditional UPDATE that marks a batch of ``kind`` files expired.

    ``chosen`` wraps the pick of ids (``{pick}``): ``id IN ({pick})`` on SQLite, ``id =
    ANY(ARRAY({pick}))`` on PostgreSQL, where ``lock`` skips rows a delete holds.
    """
    due = _DUE.format(kept=_KEPT[kind])
    pick = _PICK.format(due=due, lock=lock)
    return _EXPIRE.format(
        mark=_MARK[kind],
        chosen=chosen.format(pick=pick),
        kept=_KEPT[kind],
        columns=sql.TASK_COLUMNS,
    )


EXPIRABLE = {
    kind: f"SELECT COUNT(*), COALESCE(SUM({_BYTES[kind]}), 0) FROM tasks "
    f"WHERE {_DUE.format(kept=_KEPT[kind])}"
    for kind in FileKind
}
RESTORE = "UPDATE tasks SET {mark} = NULL WHERE id IN ({ids})"

TAKE_LEASE = """
INSERT INTO leases (name, holder, expires) VALUES (:name, :holder, :until)
ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires = excluded.expires
WHERE leases.expires < :now OR leases.holder = excluded.holder
RETURNING holder
"""
DROP_LEASE = "DELETE FROM leases WHERE name = :name AND holder = :holder"


def usage_of(outputs: list[Any], inputs: list[Any]) -> StorageUsage:
    """``StorageUsage`` from the rows of the two ``USAGE`` reads."""
    return StorageUsage(
        int(outputs[0][0]), int(outputs[0][1]), int(inputs[0][0]), int(inputs[0][1])
    )


def _expire_params(before: float, now: float, limit: int, holder: str) -> dict[str, Any]:
    return {"before": before, "now": now, "limit": limit, "lease": LEASE, "holder": holder}


class SqliteRetention(SqliteHost):
    """The retention methods of ``SqliteStore`` (writes on its one writer thread)."""

    async def storage_usage(self) -> StorageUsage:
        return usage_of(
            self._read(USAGE[FileKind.OUTPUTS], {}), self._read(USAGE[FileKind.INPUTS], {})
        )

    async def take_lease(self, name: str, holder: str, *, now: float, until: float) -> bool:
        params = {"name": name, "holder": holder, "now": now, "until": until}
        return await self._write(
            lambda conn: conn.execute(TAKE_LEASE, params).fetchone() is not None
        )

    async def drop_lease(self, name: str, holder: str) -> None:
        params = {"name": name, "holder": holder}
        await self._write(lambda conn: conn.execute(DROP_LEASE, params))

    async def expire_files(
        self, kind: FileKind, *, before: float, now: float, limit: int, holder: str
    ) -> list[Task]:
        statement = expire_statement(kind, chosen="id IN ({pick})")
        params = _expire_params(before, now, limit, holder)

        def run(conn: sqlite3.Connection) -> list[Task]:
            rows = conn.execute(statement, params).fetchall()
            return sorted(map(sql.task_from_row, rows), key=lambda task: task.completed_at or 0)

        return await self._write(run)

    async def restore_files(self, kind: FileKind, task_ids: Collection[str]) -> None:
        statement = RESTORE.format(mark=_MARK[kind], ids="SELECT value FROM json_each(:ids)")
        params = {"ids": json.dumps(list(task_ids))}
        await self._write(lambda conn: conn.execute(statement, params))

    async def expirable(self, kind: FileKind, *, before: float) -> tuple[int, int]:
        rows = self._read(EXPIRABLE[kind], {"before": before})
        return int(rows[0][0]), int(rows[0][1])


_PG = {
    "take_lease": sql.for_psycopg(TAKE_LEASE),
    "drop_lease": sql.for_psycopg(DROP_LEASE),
    **{f"usage_{kind}": sql.for_psycopg(USAGE[kind]) for kind in FileKind},
    **{f"expirable_{kind}": sql.for_psycopg(EXPIRABLE[kind]) for kind in FileKind},
    **{
        f"expire_{kind}": sql.for_psycopg(
            expire_statement(kind, chosen="id = ANY(ARRAY({pick}))", lock=" FOR UPDATE SKIP LOCKED")
        )
        for kind in FileKind
    },
    **{
        f"restore_{kind}": sql.for_psycopg(
            RESTORE.format(mark=_MARK[kind], ids="SELECT unnest(CAST(:ids AS text[]))")
        )
        for kind in FileKind
    },
}


class PostgresRetention(PostgresHost):
    """The retention methods of ``PostgresStore`` (one autocommit statement each)."""

    async def storage_usage(self) -> StorageUsage:
        outputs = await self._rows(_PG[f"usage_{FileKind.OUTPUTS}"], {})
        inputs = await self._rows(_PG[f"usage_{FileKind.INPUTS}"], {})
        return usage_of(outputs, inputs)

    async def take_lease(self, name: str, holder: str, *, now: float, until: float) -> bool:
        params = {"name": name, "holder": holder, "now": now, "until": until}
        return bool(await self._rows(_PG["take_lease"], params))

    async def drop_lease(self, name: str, holder: str) -> None:
        await self._rows(_PG["drop_lease"], {"name": name, "holder": holder})

    async def expire_files(
        self, kind: FileKind, *, before: float, now: float, limit: int, holder: str
    ) -> list[Task]:
        params = _expire_params(before, now, limit, holder)
        tasks = await self._tasks(_PG[f"expire_{kind}"], params)
        return sorted(tasks, key=lambda task: task.completed_at or 0)

    async def restore_files(self, kind: FileKind, task_ids: Collection[str]) -> None:
        await self._rows(_PG[f"restore_{kind}"], {"ids": list(task_ids)})

    async def expirable(self, kind: FileKind, *, before: float) -> tuple[int, int]:
        rows = await self._rows(_PG[f"expirable_{kind}"], {"before": before})
        return int(rows[0][0]), int(rows[0][1])


class MemoryRetention:
    """The retention methods of ``MemoryStore``: the fake of the port."""

    if TYPE_CHECKING:
        _tasks: dict[str, Task]

    _leases: dict[str, tuple[str, float]]

    def _lease_table(self) -> dict[str, tuple[str, float]]:
        if not hasattr(self, "_leases"):
            self._leases = {}
        return self._leases

    @staticmethod
    def _kept(task: Task, kind: FileKind) -> bool:
        if kind is FileKind.OUTPUTS:
            return task.phase is Phase.DONE and task.files_expired_at is None
        return task.spec.input_key is not None and task.input_expired_at is None

    @staticmethod
    def _size(task: Task, kind: FileKind) -> int | None:
        return task.output_bytes if kind is FileKind.OUTPUTS else task.input_bytes

    async def storage_usage(self) -> StorageUsage:
        counts = []
        for kind in FileKind:
            sizes = [self._size(t, kind) for t in self._tasks.values() if self._kept(t, kind)]
            known = [size for size in sizes if size is not None]
            counts += [len(known), sum(known)]
        return StorageUsage(*counts)

    async def take_lease(self, name: str, holder: str, *, now: float, until: float) -> bool:
        leases = self._lease_table()
        current = leases.get(name)
        if current is not None and current[1] >= now and current[0] != holder:
            return False
        leases[name] = (holder, until)
        return True

    async def drop_lease(self, name: str, holder: str) -> None:
        leases = self._lease_table()
        if leases.get(name, ("", 0.0))[0] == holder:
            del leases[name]

    def _due(self, kind: FileKind, before: float) -> list[Task]:
        due = [
            task
            for task in self._tasks.values()
            if self._kept(task, kind)
            and task.phase is Phase.DONE
            and task.completed_at is not None
            and task.completed_at < before
        ]
        return sorted(due, key=lambda task: task.completed_at or 0)

    async def expire_files(
        self, kind: FileKind, *, before: float, now: float, limit: int, holder: str
    ) -> list[Task]:
        if self._lease_table().get(LEASE, ("", 0.0))[0] != holder:
            return []
        marked = []
        for task in self._due(kind, before)[:limit]:
            mark = {_MARK[kind]: now}
            self._tasks[task.id] = replace(task, **mark)  # type: ignore[arg-type]
            marked.append(self._tasks[task.id])
        return marked

    async def restore_files(self, kind: FileKind, task_ids: Collection[str]) -> None:
        for task_id in task_ids:
            with contextlib.suppress(KeyError):
                task = self._tasks[task_id]
                self._tasks[task_id] = replace(task, **{_MARK[kind]: None})  # type: ignore[arg-type]

    async def expirable(self, kind: FileKind, *, before: float) -> tuple[int, int]:
        due = self._due(kind, before)
        return len(due), sum(self._size(task, kind) or 0 for task in due)
