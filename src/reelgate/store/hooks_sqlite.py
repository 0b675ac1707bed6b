"""``HookStore`` on SQLite: idempotency keys and the webhook outbox (a mixin of the store).

Every write runs on the store's writer thread in ``BEGIN IMMEDIATE``, so a claim of
due deliveries is serialised with every other writer, across processes too.
"""

from __future__ import annotations

import sqlite3

from reelgate.domain.webhooks import Attempt, Delivery, Endpoint, IdempotencyRecord
from reelgate.store import hooks_sql as q
from reelgate.store.mixins import SqliteHost


class SqliteHooks(SqliteHost):
    """The ``HookStore`` methods of ``SqliteStore``."""

    async def reserve_key(
        self, record: IdempotencyRecord, *, now: float
    ) -> IdempotencyRecord | None:
        params = q.key_params(record)
        where = {"owner": record.owner, "key": record.key, "now": now}

        def run(conn: sqlite3.Connection) -> IdempotencyRecord | None:
            conn.execute(q.DROP_EXPIRED_KEY, where)
            if conn.execute(q.INSERT_KEY, params).fetchone() is not None:
                return None
            row = conn.execute(q.SELECT_KEY, where).fetchone()
            return q.key_from_row(row)

        return await self._write(run)

    async def release_key(self, owner: str, key: str, task_id: str) -> None:
        params = {"owner": owner, "key": key, "task_id": task_id}
        await self._write(lambda conn: conn.execute(q.DELETE_KEY, params))

    async def purge_keys(self, *, now: float) -> int:
        return await self._write(lambda conn: conn.execute(q.PURGE_KEYS, {"now": now}).rowcount)

    async def add_callback(self, task_id: str, url: str) -> None:
        params = {"task_id": task_id, "url": url}
        await self._write(lambda conn: conn.execute(q.INSERT_CALLBACK, params))

    async def drop_callback(self, task_id: str) -> None:
        await self._write(lambda conn: conn.execute(q.DROP_CALLBACK, {"task_id": task_id}))

    async def add_endpoint(self, endpoint: Endpoint) -> None:
        params = q.endpoint_params(endpoint)
        await self._write(lambda conn: conn.execute(q.INSERT_ENDPOINT, params))

    async def list_endpoints(self, owner: str) -> list[Endpoint]:
        return [
            q.endpoint_from_row(row) for row in self._read(q.SELECT_ENDPOINTS, {"owner": owner})
        ]

    async def delete_endpoint(self, owner: str, endpoint_id: str) -> bool:
        params = {"owner": owner, "id": endpoint_id}
        return await self._write(
            lambda conn: conn.execute(q.DELETE_ENDPOINT, params).fetchone() is not None
        )

    async def claim_deliveries(
        self, *, now: float, lease_seconds: float, limit: int
    ) -> list[tuple[Delivery, str | None]]:
        statement = q.CLAIM_DELIVERIES.format(chosen=f"id IN ({q.PICK_DUE})")
        params = {"now": now, "lease_until": now + lease_seconds, "limit": limit}

        def run(conn: sqlite3.Connection) -> list[tuple[Delivery, str | None]]:
            claimed = [q.delivery_from_row(row) for row in conn.execute(statement, params)]
            ids = sorted({d.endpoint_id for d in claimed})
            marks = ", ".join("?" * len(ids))
            secrets = dict(conn.execute(q.SECRETS.format(ids=marks), ids)) if ids else {}
            claimed.sort(key=lambda d: (d.next_at, d.id))
            return [(d, secrets.get(d.endpoint_id)) for d in claimed]

        return await self._write(run)

    async def record_attempt(self, delivery: Delivery, attempt: Attempt) -> bool:
        params = q.attempt_params(delivery, attempt)
        return await self._write(lambda conn: conn.execute(q.RECORD_ATTEMPT, params).rowcount == 1)

    async def list_deliveries(
        self, owner: str, *, task_id: str | None = None, limit: int = 100
    ) -> list[Delivery]:
        statement = q.SELECT_DELIVERIES if task_id is None else q.SELECT_TASK_DELIVERIES
        params = {"owner": owner, "task_id": task_id, "limit": limit}
        return [q.delivery_from_row(row) for row in self._read(statement, params)]
