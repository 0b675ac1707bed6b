"""An in-memory ``TaskStore``: the fake of the port, for unit tests.

It keeps the same contract as the SQL stores (the contract suite runs over
all three), including conditional status changes and lease checks.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection
from dataclasses import replace

from reelgate.domain.errors import LeaseLost, NotFound
from reelgate.domain.status import Status, check_terminal
from reelgate.domain.task import ApiKey, Event, Task


class MemoryStore:
    """``TaskStore`` in dictionaries; nothing survives the process."""

    def __init__(self) -> None:
        self._tasks: dict[str, Task] = {}
        self._events: list[Event] = []
        self._keys: dict[str, ApiKey] = {}
        self._lock = asyncio.Lock()

    async def migrate(self) -> None:
        return None

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        return None

    def _record(self, task: Task, detail: str | None) -> None:
        self._events.append(
            Event(
                task.id, len(self._events) + 1, task.updated_at, task.status, task.progress, detail
            )
        )

    async def create_task(self, task: Task) -> None:
        async with self._lock:
            if task.id in self._tasks:
                raise ValueError(f"duplicate task id {task.id}")
            self._tasks[task.id] = task
            self._record(task, "created")

    async def get_task(self, task_id: str) -> Task | None:
        return self._tasks.get(task_id)

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
        claimed: list[Task] = []
        async with self._lock:
            for task in sorted(self._tasks.values(), key=lambda t: t.created_at):
                if models is not None and task.spec.model not in models:
                    continue
                expired = (
                    task.status is Status.IN_PROGRESS
                    and task.lease_until is not None
                    and task.lease_until < now
                    and task.attempts < max_attempts
                )
                if len(claimed) < limit and (task.status is Status.SUBMITTED or expired):
                    taken = task.moved(
                        Status.IN_PROGRESS,
                        lease_owner=worker,
                        lease_until=now + lease_seconds,
                        attempts=task.attempts + 1,
                        updated_at=now,
                    )
                    self._tasks[task.id] = taken
                    self._record(taken, f"attempt {taken.attempts}")
                    claimed.append(taken)
            return claimed

    def _leased(self, task_id: str, worker: str) -> Task:
        task = self._tasks.get(task_id)
        if task is None or task.status is not Status.IN_PROGRESS or task.lease_owner != worker:
            raise LeaseLost(f"worker {worker} no longer holds task {task_id}")
        return task

    async def heartbeat(
        self, task_id: str, *, worker: str, now: float, lease_seconds: float, progress: int
    ) -> Task:
        async with self._lock:
            task = self._leased(task_id, worker)
            task = replace(
                task,
                progress=max(task.progress, progress),
                lease_until=now + lease_seconds,
                updated_at=now,
            )
            self._tasks[task_id] = task
            return task

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
        async with self._lock:
            task = self._leased(task_id, worker).moved(
                status,
                progress=100 if status is Status.SUCCESS else self._tasks[task_id].progress,
                completed_at=now,
                updated_at=now,
                lease_owner=None,
                lease_until=None,
                output_key=output_key,
                error_code=error_code,
                error_message=error_message,
            )
            self._tasks[task_id] = task
            self._record(task, error_code)
            return task

    async def release_task(self, task_id: str, *, worker: str, now: float) -> Task:
        async with self._lock:
            task = self._leased(task_id, worker)
            task = replace(
                task, lease_owner=None, lease_until=0.0, attempts=task.attempts - 1, updated_at=now
            )
            self._tasks[task_id] = task
            self._record(task, "released")
            return task

    async def expire_tasks(self, *, now: float, max_attempts: int) -> list[Task]:
        async with self._lock:
            expired = []
            for task in list(self._tasks.values()):
                if (
                    task.status is Status.IN_PROGRESS
                    and task.lease_until is not None
                    and task.lease_until < now
                    and task.attempts >= max_attempts
                ):
                    ended = task.moved(
                        Status.ERROR,
                        completed_at=now,
                        updated_at=now,
                        lease_owner=None,
                        lease_until=None,
                        error_code="worker_lost",
                        error_message=f"the render was interrupted {task.attempts} times; "
                        "giving up",
                    )
                    self._tasks[task.id] = ended
                    self._record(ended, ended.error_code)
                    expired.append(ended)
            return expired

    async def list_events(self, task_id: str) -> list[Event]:
        return [event for event in self._events if event.task_id == task_id]

    async def add_key(self, key: ApiKey) -> None:
        self._keys[key.id] = key

    async def key_by_hash(self, key_hash: str) -> ApiKey | None:
        return next((k for k in self._keys.values() if k.key_hash == key_hash), None)

    async def list_keys(self) -> list[ApiKey]:
        return sorted(self._keys.values(), key=lambda k: k.created_at)

    async def revoke_key(self, key_id: str, *, now: float) -> ApiKey:
        key = self._keys.get(key_id)
        if key is None:
            raise NotFound(f"no API key with id {key_id!r}")
        if key.revoked_at is None:
            key = replace(key, revoked_at=now)
            self._keys[key_id] = key
        return key
