"""Create with the extras of ``POST /v1/videos``: an ``Idempotency-Key`` and a ``callback_url``.

The key is taken (a row under a primary key: one of any number of concurrent
requests wins) before the task is stored, with the id the task will get; the others
read the winner's record and answer with its task once it is stored, or get 409
when they sent a different request. The callback URL is recorded before the task,
so that even a task that ends at once has its delivery in the outbox.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from dataclasses import asdict, dataclass

from reelgate.domain.errors import IdempotencyConflict
from reelgate.domain.quotas import Limits
from reelgate.domain.request import parse_create
from reelgate.domain.task import Task, new_task_id
from reelgate.domain.webhooks import (
    IDEMPOTENCY_TTL,
    IdempotencyRecord,
    check_idempotency_key,
    request_digest,
)
from reelgate.ports import Clock, HookStore, TaskStore
from reelgate.services.tasks import TaskService
from reelgate.services.webhooks import WebhookService

CALLBACK_FIELD = "callback_url"
WAIT_FOR_WINNER = 10.0  # seconds a duplicate waits for the first request's task
STALE_AFTER = 60.0  # a key whose task never appeared (its request died) is taken over


@dataclass(frozen=True, slots=True)
class Created:
    """A create's outcome: the task, and whether an earlier request with the key made it."""

    task: Task
    replayed: bool = False


class CreateService:
    """``TaskService.create`` with idempotency keys and per-task callback URLs."""

    def __init__(
        self,
        tasks: TaskService,
        store: TaskStore,
        hooks: HookStore,
        webhooks: WebhookService,
        clock: Clock,
    ) -> None:
        self.tasks = tasks
        self._store = store
        self._hooks = hooks
        self._webhooks = webhooks
        self._clock = clock

    async def create(
        self,
        owner: str,
        fields: Mapping[str, object],
        image: bytes | None = None,
        *,
        idempotency_key: str | None = None,
        limits: Limits | None = None,
    ) -> Created:
        """Create a task (or answer with the one an earlier request with the key made).

        ``limits``: the signed-in key's. A create they refuse (``RateLimited``) leaves
        nothing: its idempotency key and callback are released, as for any failure; a
        replay is no new create and is never refused.
        """
        fields = dict(fields)
        callback = fields.pop(CALLBACK_FIELD, None)
        key = None if idempotency_key is None else check_idempotency_key(idempotency_key)
        request = parse_create(fields, has_image=image is not None, catalog=self.tasks.catalog)
        callback_url = None
        if callback is not None and callback != "":
            callback_url = await self._webhooks.check_url(callback, CALLBACK_FIELD)
        task_id = new_task_id()
        record = None
        if key is not None:
            parsed = {**asdict(request), CALLBACK_FIELD: callback_url}
            now = self._clock()
            record = IdempotencyRecord(
                owner, key, request_digest(parsed, image), task_id, now, now + IDEMPOTENCY_TTL
            )
            earlier = await self._reserve(record)
            if earlier is not None:
                return Created(earlier, replayed=True)
        try:
            if callback_url is not None:
                await self._hooks.add_callback(task_id, callback_url)
            task = await self.tasks.add(owner, request, image, task_id=task_id, limits=limits)
        except BaseException:
            with contextlib.suppress(Exception):
                await asyncio.shield(self._undo(record, task_id, callback_url is not None))
            raise
        return Created(task)

    async def _undo(self, record: IdempotencyRecord | None, task_id: str, callback: bool) -> None:
        if record is not None:
            await self._hooks.release_key(record.owner, record.key, task_id)
        if callback:
            await self._hooks.drop_callback(task_id)

    async def _reserve(self, record: IdempotencyRecord) -> Task | None:
        """None when ``record`` took its key; else the task of the request that holds it.

        ``IdempotencyConflict`` when that request differs, or when its task does not
        appear within ``WAIT_FOR_WINNER`` seconds.
        """
        deadline = asyncio.get_running_loop().time() + WAIT_FOR_WINNER
        while True:
            held = await self._hooks.reserve_key(record, now=self._clock())
            if held is None:
                return None
            if held.digest != record.digest:
                raise IdempotencyConflict(
                    "this Idempotency-Key was used with a different request in the last 24 "
                    "hours; use a new key for a new request",
                    param="Idempotency-Key",
                )
            task = await self._store.get_task(held.task_id)
            if task is not None and task.owner == record.owner:
                return task
            if self._clock() - held.created_at > STALE_AFTER:  # its request died: take over
                await self._hooks.release_key(held.owner, held.key, held.task_id)
                continue
            if asyncio.get_running_loop().time() > deadline:
                raise IdempotencyConflict(
                    "a request with this Idempotency-Key is still in progress; retry shortly",
                    param="Idempotency-Key",
                )
            await asyncio.sleep(0.02)  # the first request is storing its task right now
