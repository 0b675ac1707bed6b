"""Keys' limits and usage on PostgreSQL (a mixin of ``PostgresStore``, and ``admit``).

A create under limits runs in a transaction that first takes a transaction-level
advisory lock on its owner (and, with a global queue cap, one on the queue): two
API processes never count the same owner at once, so no limit is overrun.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping
from typing import Any

from reelgate.domain.errors import NotFound
from reelgate.domain.quotas import Counts, Limits, UsageLine, rate_refusal, refuse
from reelgate.domain.task import ApiKey, Task
from reelgate.store import quotas_sql as q
from reelgate.store import sql
from reelgate.store.mixins import PostgresHost

_OWNER_LOCKS = 0x7267_0001  # the class of the (class, owner hash) advisory locks
_QUEUE_LOCK = (0x7267_0002, 0)  # held by creates while a global queue cap applies

_Q = {
    name: sql.for_psycopg(text)
    for name, text in {
        "active": q.COUNT_ACTIVE,
        "queued": q.COUNT_QUEUED,
        "daily": q.SELECT_DAILY,
        "rate": q.COUNT_RATE,
        "prune_rate": q.PRUNE_RATE,
        "add_daily": q.ADD_DAILY,
        "prune_daily": q.PRUNE_DAILY,
        "select_key": q.SELECT_KEY,
        "update_key": q.UPDATE_KEY,
    }.items()
}
_LOCK = "SELECT pg_advisory_xact_lock(%s, %s)"


def owner_lock(owner: str) -> tuple[int, int]:
    """The advisory lock of ``owner``: a stable 32-bit hash, the same in every process."""
    return _OWNER_LOCKS, zlib.crc32(owner.encode("utf-8", "surrogatepass")) - 2**31


async def admit(conn: Any, task: Task, limits: Limits) -> None:
    """Count ``task``'s create against ``limits`` inside the open transaction of ``conn``,
    or raise ``RateLimited`` (the transaction then rolls back)."""
    params = q.quota_params(task, limits)
    active, daily, queued = q.counts_needed(limits)
    if queued:
        await conn.execute(_LOCK, _QUEUE_LOCK)
    await conn.execute(_LOCK, owner_lock(task.owner))
    counts = Counts(
        active=await _one(conn, _Q["active"], params) if active else 0,
        seconds_today=await _one(conn, _Q["daily"], params) if daily else 0,
        queued=await _one(conn, _Q["queued"], params) if queued else 0,
    )
    refused = refuse(limits, counts, task.spec.seconds, task.created_at)
    if refused is not None:
        raise refused
    if limits.rate_per_minute is not None:
        await conn.execute(_Q["prune_rate"], params)
        cursor = await conn.execute(_Q["rate"], params)
        if await cursor.fetchone() is None:
            raise rate_refusal(limits, task.created_at)
    if daily:
        await conn.execute(_Q["prune_daily"], params)
        await conn.execute(_Q["add_daily"], params)


async def _one(conn: Any, statement: str, params: Mapping[str, Any]) -> int:
    cursor = await conn.execute(statement, params)
    row = await cursor.fetchone()
    return int(row[0]) if row is not None and row[0] is not None else 0


class PostgresQuotas(PostgresHost):
    """The ``QuotaStore`` methods of ``PostgresStore``."""

    async def key_by_id(self, key_id: str) -> ApiKey | None:
        rows = await self._rows(_Q["select_key"], {"id": key_id})
        return sql.key_from_row(rows[0]) if rows else None

    async def update_key(self, key: ApiKey) -> ApiKey:
        rows = await self._rows(_Q["update_key"], q.key_update_params(key))
        if not rows:
            raise NotFound(f"no API key with id {key.id!r}")
        return sql.key_from_row(rows[0])

    async def usage(
        self, start_day: int, end_day: int, *, owner: str | None = None, model: str | None = None
    ) -> list[UsageLine]:
        statement, params = q.usage_statement(start_day, end_day, owner, model)
        return q.usage_from_rows(await self._rows(sql.for_psycopg(statement), params))
