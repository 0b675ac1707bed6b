"""``HookStore`` in memory (a mixin of ``MemoryStore``): the fake of the port."""

from __future__ import annotations

import secrets
from dataclasses import replace
from typing import TYPE_CHECKING

from reelgate.domain.status import Status
from reelgate.domain.task import Event, Task
from reelgate.domain.webhooks import (
    CALLBACK,
    Attempt,
    Delivery,
    DeliveryState,
    Endpoint,
    IdempotencyRecord,
)

_TERMINAL = (Status.SUCCESS, Status.FAILED, Status.ERROR)


class MemoryHooks:
    """The ``HookStore`` methods of ``MemoryStore``; ``_outbox`` is its trigger."""

    if TYPE_CHECKING:
        _tasks: dict[str, Task]

    _idempotency: dict[tuple[str, str], IdempotencyRecord]
    _callbacks: dict[str, str]
    _endpoints: dict[str, Endpoint]
    _deliveries: dict[str, Delivery]

    def _hooks(self) -> None:
        if not hasattr(self, "_deliveries"):
            self._idempotency, self._callbacks = {}, {}
            self._endpoints, self._deliveries = {}, {}

    def _forget_hooks(self, task_id: str) -> None:
        """What the SQL stores' ``delete_task`` also deletes: the task's key and callback."""
        self._hooks()
        for name, record in list(self._idempotency.items()):
            if record.task_id == task_id:
                del self._idempotency[name]
        self._callbacks.pop(task_id, None)

    def _outbox(self, event: Event, task: Task) -> None:
        """What the SQL stores' trigger does: a terminal event's deliveries."""
        self._hooks()
        if event.status not in _TERMINAL:
            return
        targets = [(e.id, e.url) for e in self._endpoints.values() if e.owner == task.owner]
        if task.id in self._callbacks:
            targets.append((CALLBACK, self._callbacks[task.id]))
        taken = {(d.task_id, d.endpoint_id) for d in self._deliveries.values()}
        for endpoint_id, url in targets:
            if (task.id, endpoint_id) in taken:
                continue
            delivery = Delivery(
                "msg_" + secrets.token_hex(16),
                task.owner,
                endpoint_id,
                url,
                task.id,
                event.seq,
                event.status.value,
                event.progress,
                task.spec.model,
                task.error_code,
                task.error_message,
                task.output_key,
                event.at,
                DeliveryState.PENDING,
                0,
                event.at,
                event.at,
            )
            self._deliveries[delivery.id] = delivery

    async def reserve_key(
        self, record: IdempotencyRecord, *, now: float
    ) -> IdempotencyRecord | None:
        self._hooks()
        held = self._idempotency.get((record.owner, record.key))
        if held is not None and held.expires_at > now:
            return held
        self._idempotency[(record.owner, record.key)] = record
        return None

    async def release_key(self, owner: str, key: str, task_id: str) -> None:
        self._hooks()
        held = self._idempotency.get((owner, key))
        if held is not None and held.task_id == task_id:
            del self._idempotency[(owner, key)]

    async def purge_keys(self, *, now: float) -> int:
        self._hooks()
        expired = [k for k, r in self._idempotency.items() if r.expires_at <= now]
        for k in expired:
            del self._idempotency[k]
        return len(expired)

    async def add_callback(self, task_id: str, url: str) -> None:
        self._hooks()
        self._callbacks[task_id] = url

    async def drop_callback(self, task_id: str) -> None:
        self._hooks()
        self._callbacks.pop(task_id, None)

    async def add_endpoint(self, endpoint: Endpoint) -> None:
        self._hooks()
        self._endpoints[endpoint.id] = endpoint

    async def list_endpoints(self, owner: str) -> list[Endpoint]:
        self._hooks()
        found = [e for e in self._endpoints.values() if e.owner == owner]
        return sorted(found, key=lambda e: (e.created_at, e.id))

    async def delete_endpoint(self, owner: str, endpoint_id: str) -> bool:
        self._hooks()
        endpoint = self._endpoints.get(endpoint_id)
        if endpoint is None or endpoint.owner != owner:
            return False
        del self._endpoints[endpoint_id]
        return True

    async def claim_deliveries(
        self, *, now: float, lease_seconds: float, limit: int
    ) -> list[tuple[Delivery, str | None]]:
        self._hooks()
        due = [
            d
            for d in self._deliveries.values()
            if d.state == DeliveryState.PENDING and d.next_at <= now
        ]
        due.sort(key=lambda d: (d.next_at, d.id))
        claimed = []
        for delivery in due[:limit]:
            taken = replace(delivery, next_at=now + lease_seconds)
            self._deliveries[taken.id] = taken
            endpoint = self._endpoints.get(taken.endpoint_id)
            claimed.append((taken, None if endpoint is None else endpoint.secret))
        return claimed

    async def record_attempt(self, delivery: Delivery, attempt: Attempt) -> bool:
        self._hooks()
        held = self._deliveries.get(delivery.id)
        if held is None or held.state != DeliveryState.PENDING or held.next_at != delivery.next_at:
            return False
        self._deliveries[delivery.id] = replace(
            held,
            state=attempt.state,
            attempts=held.attempts + 1,
            next_at=attempt.next_at,
            last_status=attempt.last_status,
            last_error=attempt.last_error,
            delivered_at=attempt.delivered_at,
        )
        return True

    async def list_deliveries(
        self, owner: str, *, task_id: str | None = None, limit: int = 100
    ) -> list[Delivery]:
        self._hooks()
        found = [
            d
            for d in self._deliveries.values()
            if d.owner == owner and (task_id is None or d.task_id == task_id)
        ]
        found.sort(key=lambda d: (d.created_at, d.id), reverse=True)
        return found[:limit]
