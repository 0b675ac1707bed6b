"""``HookStore`` on PostgreSQL: idempotency keys and the webhook outbox (a mixin of the store).

Delivery workers in any number of processes claim due deliveries with ``FOR UPDATE
SKIP LOCKED``: none waits on another, none takes a delivery another holds.
"""

from __future__ import annotations

from reelgate.domain.errors import Unavailable
from reelgate.domain.webhooks import Attempt, Delivery, Endpoint, IdempotencyRecord
from reelgate.store import hooks_sql as q
from reelgate.store.mixins import PostgresHost
from reelgate.store.sql import for_psycopg

_Q = {
    name: for_psycopg(text)
    for name, text in {
        "drop_expired_key": q.DROP_EXPIRED_KEY,
        "insert_key": q.INSERT_KEY,
        "select_key": q.SELECT_KEY,
        "delete_key": q.DELETE_KEY,
        "purge_keys": q.PURGE_KEYS,
        "insert_callback": q.INSERT_CALLBACK,
        "drop_callback": q.DROP_CALLBACK,
        "insert_endpoint": q.INSERT_ENDPOINT,
        "endpoints": q.SELECT_ENDPOINTS,
        "delete_endpoint": q.DELETE_ENDPOINT,
        "claim": q.CLAIM_DELIVERIES.format(
            chosen=f"id = ANY(ARRAY({q.PICK_DUE} FOR UPDATE SKIP LOCKED))"
        ),
        "secrets": q.SECRETS.format(ids="SELECT unnest(CAST(:ids AS text[]))"),
        "record": q.RECORD_ATTEMPT,
        "deliveries": q.SELECT_DELIVERIES,
        "task_deliveries": q.SELECT_TASK_DELIVERIES,
    }.items()
}


class PostgresHooks(PostgresHost):
    """The ``HookStore`` methods of ``PostgresStore``."""

    async def reserve_key(
        self, record: IdempotencyRecord, *, now: float
    ) -> IdempotencyRecord | None:
        where = {"owner": record.owner, "key": record.key, "now": now}
        for _ in range(3):  # the holder may expire or be released between two statements
            async with self._connection() as conn, conn.transaction():
                await conn.execute(_Q["drop_expired_key"], where)
                cursor = await conn.execute(_Q["insert_key"], q.key_params(record))
                if await cursor.fetchone() is not None:
                    return None
            # A new statement: the winner of a concurrent insert has committed by now
            # (the insert above waited on its row), so its record is visible.
            rows = await self._rows(_Q["select_key"], where)
            if rows:
                return q.key_from_row(rows[0])
        raise Unavailable("postgresql: an idempotency key changed hands too often; retry")

    async def release_key(self, owner: str, key: str, task_id: str) -> None:
        await self._rows(_Q["delete_key"], {"owner": owner, "key": key, "task_id": task_id})

    async def purge_keys(self, *, now: float) -> int:
        async with self._connection() as conn:
            cursor = await conn.execute(_Q["purge_keys"], {"now": now})
            return int(cursor.rowcount)

    async def add_callback(self, task_id: str, url: str) -> None:
        await self._rows(_Q["insert_callback"], {"task_id": task_id, "url": url})

    async def drop_callback(self, task_id: str) -> None:
        await self._rows(_Q["drop_callback"], {"task_id": task_id})

    async def add_endpoint(self, endpoint: Endpoint) -> None:
        await self._rows(_Q["insert_endpoint"], q.endpoint_params(endpoint))

    async def list_endpoints(self, owner: str) -> list[Endpoint]:
        rows = await self._rows(_Q["endpoints"], {"owner": owner})
        return [q.endpoint_from_row(row) for row in rows]

    async def delete_endpoint(self, owner: str, endpoint_id: str) -> bool:
        return bool(await self._rows(_Q["delete_endpoint"], {"owner": owner, "id": endpoint_id}))

    async def claim_deliveries(
        self, *, now: float, lease_seconds: float, limit: int
    ) -> list[tuple[Delivery, str | None]]:
        params = {"now": now, "lease_until": now + lease_seconds, "limit": limit}
        claimed = [q.delivery_from_row(row) for row in await self._rows(_Q["claim"], params)]
        ids = sorted({d.endpoint_id for d in claimed})
        secrets: dict[str, str] = {}
        if ids:
            secrets = dict(await self._rows(_Q["secrets"], {"ids": ids}))
        claimed.sort(key=lambda d: (d.next_at, d.id))
        return [(d, secrets.get(d.endpoint_id)) for d in claimed]

    async def record_attempt(self, delivery: Delivery, attempt: Attempt) -> bool:
        params = q.attempt_params(delivery, attempt)
        async with self._connection() as conn:
            cursor = await conn.execute(_Q["record"], params)
            return int(cursor.rowcount) == 1

    async def list_deliveries(
        self, owner: str, *, task_id: str | None = None, limit: int = 100
    ) -> list[Delivery]:
        statement = _Q["deliveries" if task_id is None else "task_deliveries"]
        params = {"owner": owner, "task_id": task_id, "limit": limit}
        return [q.delivery_from_row(row) for row in await self._rows(statement, params)]
