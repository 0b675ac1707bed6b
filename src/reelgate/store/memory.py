"""An in-memory ``TaskStore``: the fake of the port, for unit tests.

It keeps the same contract as the SQL stores (the contract suite runs over
all three), including conditional status changes and lease checks.
"""

from __future__ import annotations

import asyncio
import bisect
from collections.abc import Collection, Mapping, Sequence
from dataclasses import replace
from typing import Any

from reelgate.domain.errors import Conflict, IllegalTransition, LeaseLost, NotFound
from reelgate.domain.listing import Cursor, ListQuery, Page, beyond, page_of
from reelgate.domain.progress import learn, progress_stepped
from reelgate.domain.quotas import Limits
from reelgate.domain.routing import Candidate, assign, first_free
from reelgate.domain.status import Phase, Status, check_terminal
from reelgate.domain.task import ApiKey, Event, Task
from reelgate.ports import Claimed, Move
from reelgate.store import sql
from reelgate.store.hooks_memory import MemoryHooks
from reelgate.store.quotas_memory import MemoryQuotas
from reelgate.store.retention import MemoryRetention
from reelgate.store.sql import MOVABLE


class MemoryStore(MemoryHooks, MemoryRetention, MemoryQuotas):
    """``TaskStore`` in dictionaries; nothing survives the process."""

    def __init__(self) -> None:
        self._tasks: dict[str, Task] = {}
        self._events: list[Event] = []
        self._seq = 0
        self._keys: dict[str, ApiKey] = {}
        self._lock = asyncio.Lock()
        self._pollers: dict[str, float] = {}
        self._durations: dict[tuple[str, str, int, str], float] = {}
        self._cancels: list[tuple[float, str]] = []  # (when, task id), for cancelled_since

    async def migrate(self) -> None:
        return None

    async def ping(self) -> None:
        return None

    async def check_writes(self, *, min_free_bytes: int = 0) -> None:
        return None

    async def close(self) -> None:
        return None

    def _record(self, task: Task, detail: str | None) -> None:
        self._seq += 1  # never reused, even when events are deleted
        self._events.append(
            Event(task.id, self._seq, task.updated_at, task.status, task.progress, detail)
        )
        self._outbox(self._events[-1], task)  # the webhook outbox, as the SQL trigger writes it
        self._account(task)  # usage and daily seconds, as migration 0008's triggers do

    async def create_task(self, task: Task, limits: Limits | None = None) -> None:
        async with self._lock:
            if task.id in self._tasks:
                raise Conflict(f"duplicate task id {task.id}")
            if limits is not None and not limits.unlimited:
                self._admit(task, limits)
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
                    task.phase is Phase.RENDERING
                    and task.lease_until is not None
                    and task.lease_until < now
                    and task.attempts < max_attempts
                )
                if len(claimed) < limit and (task.phase is Phase.QUEUED or expired):
                    taken = task.moved_to(
                        Phase.RENDERING,
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
        if task is None or task.phase is not Phase.RENDERING or task.lease_owner != worker:
            raise LeaseLost(f"worker {worker} no longer holds task {task_id}")
        return task

    async def heartbeat(
        self, task_id: str, *, worker: str, now: float, lease_seconds: float, progress: int
    ) -> Task:
        async with self._lock:
            before = self._leased(task_id, worker)
            task = replace(
                before,
                progress=max(before.progress, progress),
                lease_until=now + lease_seconds,
                updated_at=now,
            )
            self._tasks[task_id] = task
            if progress_stepped(before.progress, task.progress):
                self._record(task, "progress")
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
        output_bytes: int | None = None,
    ) -> Task:
        check_terminal(status)
        async with self._lock:
            task = self._leased(task_id, worker).moved_to(
                Phase.DONE,
                status,
                progress=100 if status is Status.SUCCESS else self._tasks[task_id].progress,
                completed_at=now,
                updated_at=now,
                lease_owner=None,
                lease_until=None,
                output_key=output_key,
                error_code=error_code,
                error_message=error_message,
                output_bytes=output_bytes,
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
                    task.phase is Phase.RENDERING
                    and task.lease_until is not None
                    and task.lease_until < now
                    and task.attempts >= max_attempts
                ):
                    ended = task.moved_to(
                        Phase.DONE,
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

    async def events_after(self, task_id: str, after: int, *, limit: int = 100) -> list[Event]:
        found = [e for e in self._events if e.task_id == task_id and e.seq > after]
        return found[:limit]

    async def event_feed(self, after: int, *, limit: int = 1000) -> list[tuple[int, str]]:
        start = bisect.bisect_right(self._events, after, key=lambda e: e.seq)
        return [(e.seq, e.task_id) for e in self._events[start : start + limit]]

    async def last_event(self) -> int:
        return self._seq

    async def queue_depth(self) -> dict[Phase, int]:
        depth: dict[Phase, int] = {}
        for task in self._tasks.values():
            if task.phase is not Phase.DONE:
                depth[task.phase] = depth.get(task.phase, 0) + 1
        return depth

    async def list_tasks(self, owner: str, query: ListQuery, cursor: Cursor | None = None) -> Page:
        found = [
            task
            for task in self._tasks.values()
            if task.owner == owner
            and query.matches(task)
            and beyond(task, cursor, query.descending)
        ]
        found.sort(key=lambda t: (t.created_at, t.id), reverse=query.descending)
        return page_of(found[: query.limit + 1], query.limit)

    # remote tasks ------------------------------------------------------------

    async def move(self, move: Move) -> Task:
        async with self._lock:
            return self._move(move)

    def _move(self, move: Move) -> Task:
        status = move.status()
        task = self._tasks.get(move.task_id)
        held = move.holder is None or getattr(task, move.holder[0], None) == move.holder[1]
        if task is None or task.phase not in move.source or not held:
            raise IllegalTransition(f"task {move.task_id} is not in phase {set(move.source)}")
        changes: dict[str, Any] = {"updated_at": move.now}
        if move.target is Phase.DONE:
            changes.update(
                completed_at=move.now,
                lease_owner=None,
                lease_until=None,
                watcher=None,
                next_check_at=None,
            )
        for column, value in move.fields.items():
            if column not in MOVABLE:
                raise ValueError(f"a move cannot set column {column!r}")
            changes[column] = value
        if "progress" in changes:
            changes["progress"] = max(task.progress, changes["progress"])
        if status is Status.SUCCESS:
            changes["progress"] = 100
        task = task.moved_to(move.target, status if move.target is Phase.DONE else None, **changes)
        self._tasks[task.id] = task
        if move.record:
            self._record(task, move.detail)
        return task

    def _in_flight(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for task in self._tasks.values():
            if task.provider and task.phase in (Phase.SUBMITTING, Phase.WATCHING):
                counts[task.provider] = counts.get(task.provider, 0) + 1
        return counts

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
        async with self._lock:
            in_flight = self._in_flight()
            open_models = set(sql.open_models(routes, in_flight, caps))
            candidates = [
                Candidate(
                    t.id,
                    t.spec.model,
                    t.phase,
                    t.provider,
                    t.upstream_model,
                    t.submitted_at,
                    t.attempts,
                )
                for t in sorted(self._tasks.values(), key=lambda t: t.created_at)
                if (
                    t.phase is Phase.QUEUED
                    and t.spec.model in open_models
                    and (t.next_check_at is None or t.next_check_at <= now)
                )
                or (t.phase is Phase.SUBMITTING and (t.lease_until or 0) < now)
            ]
            picks = assign(candidates, in_flight, routes, caps, limit)
            return [
                Claimed(
                    self._move(
                        sql.intent_move(pick, worker=worker, now=now, lease_seconds=lease_seconds)
                    ),
                    pick.lost,
                )
                for pick in picks
            ]

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
        async with self._lock:
            route = first_free(routes, self._in_flight(), caps, tried)
            if route is None:
                return None
            return self._move(sql.reroute_move(task_id, route, worker=worker, now=now))

    async def claim_watch(self, *, poller: str, now: float, limit: int) -> list[Task]:
        async with self._lock:
            alive = {p for p, until in self._pollers.items() if until >= now}
            free = [
                t
                for t in self._tasks.values()
                if t.phase in (Phase.WATCHING, Phase.REHOSTING) and t.watcher not in alive
            ]
            free.sort(key=lambda t: t.next_check_at or 0.0)
            taken = [replace(t, watcher=poller) for t in free[:limit]]
            self._tasks.update((t.id, t) for t in taken)
            return taken

    async def beat_poller(self, poller: str, *, now: float, alive_until: float) -> None:
        self._pollers[poller] = alive_until

    async def list_pollers(self) -> list[tuple[str, float]]:
        return sorted(self._pollers.items())

    async def drop_poller(self, poller: str, *, now: float) -> None:
        async with self._lock:
            for task in list(self._tasks.values()):
                if task.watcher == poller and task.phase in (Phase.WATCHING, Phase.REHOSTING):
                    self._tasks[task.id] = replace(task, watcher=None)
            self._pollers.pop(poller, None)

    async def upstream_ids(self, provider: str, *, since: float) -> set[str]:
        return {
            t.upstream_id
            for t in self._tasks.values()
            if t.provider == provider
            and t.upstream_id is not None
            and (t.submitted_at or 0) >= since
        }

    async def expected_duration(
        self, provider: str, model: str, seconds: int, resolution: str
    ) -> float | None:
        return self._durations.get((provider, model, seconds, resolution))

    async def learn_duration(
        self, provider: str, model: str, seconds: int, resolution: str, took: float
    ) -> None:
        key = (provider, model, seconds, resolution)
        self._durations[key] = learn(self._durations.get(key), took)

    async def cancel_task(self, task_id: str, *, now: float) -> Task:
        async with self._lock:
            task = self._move(sql.cancel_move(task_id, now))
            self._cancels.append((now, task_id))
            forgotten = now - sql.CANCEL_LOG_SECONDS
            self._cancels = [(at, tid) for at, tid in self._cancels if at >= forgotten]
            return task

    async def cancelled_since(self, since: float) -> list[str]:
        return [task_id for at, task_id in self._cancels if at >= since]

    async def delete_task(self, task_id: str) -> bool:
        async with self._lock:
            self._events = [event for event in self._events if event.task_id != task_id]
            self._forget_hooks(task_id)
            return self._tasks.pop(task_id, None) is not None

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
