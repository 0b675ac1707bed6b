"""Keys' limits and usage on SQLite (a mixin of ``SqliteStore``, and ``admit``).

A create runs in ``BEGIN IMMEDIATE``, which holds SQLite's one write lock: counting and
inserting are serialised with every other writer, in every process sharing the file.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from reelgate.domain.errors import NotFound
from reelgate.domain.quotas import Counts, Limits, UsageLine, rate_refusal, refuse
from reelgate.domain.task import ApiKey, Task
from reelgate.store import quotas_sql as q
from reelgate.store import sql
from reelgate.store.mixins import SqliteHost


def admit(conn: sqlite3.Connection, task: Task, limits: Limits) -> None:
    """Count ``task``'s create against ``limits`` in the open transaction, or raise
    ``RateLimited`` (the caller's transaction then rolls back)."""
    params = q.quota_params(task, limits)
    active, daily, queued = q.counts_needed(limits)
    counts = Counts(
        active=_one(conn, q.COUNT_ACTIVE, params) if active else 0,
        seconds_today=_one(conn, q.SELECT_DAILY, params) if daily else 0,
        queued=_one(conn, q.COUNT_QUEUED, params) if queued else 0,
    )
    refused = refuse(limits, counts, task.spec.seconds, task.created_at)
    if refused is not None:
        raise refused
    if limits.rate_per_minute is not None:
        conn.execute(q.PRUNE_RATE, params)
        if conn.execute(q.COUNT_RATE, params).fetchone() is None:
            raise rate_refusal(limits, task.created_at)
    if daily:
        conn.execute(q.PRUNE_DAILY, params)
        conn.execute(q.ADD_DAILY, params)


def _one(conn: sqlite3.Connection, statement: str, params: dict[str, Any]) -> int:
    row = conn.execute(statement, params).fetchone()
    return int(row[0]) if row is not None and row[0] is not None else 0


class SqliteQuotas(SqliteHost):
    """The ``QuotaStore`` methods of ``SqliteStore``."""

    async def key_by_id(self, key_id: str) -> ApiKey | None:
        rows = self._read(q.SELECT_KEY, {"id": key_id})
        return sql.key_from_row(rows[0]) if rows else None

    async def update_key(self, key: ApiKey) -> ApiKey:
        params = q.key_update_params(key)

        def run(conn: sqlite3.Connection) -> ApiKey:
            row = conn.execute(q.UPDATE_KEY, params).fetchone()
            if row is None:
                raise NotFound(f"no API key with id {key.id!r}")
            return sql.key_from_row(row)

        return await self._write(run)

    async def usage(
        self, start_day: int, end_day: int, *, owner: str | None = None, model: str | None = None
    ) -> list[UsageLine]:
        statement, params = q.usage_statement(start_day, end_day, owner, model)
        return q.usage_from_rows(self._read(statement, params))
