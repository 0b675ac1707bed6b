"""How the parts of a process that run tasks learn that a task was cancelled.

A cancel is one conditional statement in the store (the task ends FAILED, code
``cancelled``), so nothing runs it further: no claim takes it, and every later write of
a worker that still holds it matches no row. What remains is to stop the work already
under way, quickly:

- in the process that took the cancel (the API with its embedded worker), ``notify``
  tells every subscriber at once (``TaskService`` calls it);
- in other processes (``reelgate worker``, more API processes), ``run`` reads the
  store's cancel log (``TaskStore.cancelled_since``) every ``interval`` seconds, one
  small indexed read per process, however many tasks it runs.

Subscribers (the local render worker, the remote watcher) stop what they hold of the
task; a task they do not hold is no business of theirs. A notice may come twice (from
both paths): subscribers are idempotent. Should a notice be missed, the work still
stops at the next write the worker tries (a heartbeat, a poll's write), which then
finds the task cancelled (``ended_by_client``) and ends as quietly.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from reelgate.domain.errors import UpstreamError
from reelgate.ports import Clock, Provider, TaskStore

log = logging.getLogger("reelgate.worker")

Subscriber = Callable[[str], object]
SKEW = 30.0  # seconds of clock difference between processes that the log read tolerates


class Cancels:
    """Delivers cancels to the subscribers of one process: at once, or from the log."""

    def __init__(self, store: TaskStore, clock: Clock, *, interval: float = 1.0) -> None:
        self._store, self._clock = store, clock
        self.interval = interval
        self._subscribers: list[Subscriber] = []
        self._seen: dict[str, float] = {}  # task id -> when its notice was delivered

    def subscribe(self, subscriber: Subscriber) -> None:
        self._subscribers.append(subscriber)

    def unsubscribe(self, subscriber: Subscriber) -> None:
        if subscriber in self._subscribers:
            self._subscribers.remove(subscriber)

    def notify(self, task_id: str) -> None:
        """Tell every subscriber that ``task_id`` was cancelled (once per task)."""
        if task_id in self._seen:
            return
        self._seen[task_id] = self._clock()
        for subscriber in list(self._subscribers):
            try:
                subscriber(task_id)
            except Exception:
                log.exception("stopping cancelled task %s failed", task_id)

    async def run(self) -> None:
        """Read the store's cancel log every ``interval`` seconds, until cancelled.

        Each read starts ``SKEW`` seconds before the previous good one, so that no cancel
        is missed between reads, nor for a database that was away a while.
        """
        since = self._clock() - SKEW
        failing = False
        while True:
            started = self._clock()
            try:
                cancelled = await self._store.cancelled_since(since)
            except Exception as exc:
                if not failing:
                    log.warning("reading the cancel log failed: %s; retrying", exc)
                failing = True
            else:
                failing = False
                for task_id in cancelled:
                    self.notify(task_id)
                since = started - SKEW
                self._forget(since - SKEW)
            await asyncio.sleep(self.interval)

    def _forget(self, before: float) -> None:
        """Drop the notices older than any the log can still return."""
        for task_id in [t for t, at in self._seen.items() if at < before]:
            del self._seen[task_id]


async def ended_by_client(store: TaskStore, task_id: str) -> bool:
    """Whether ``task_id`` was cancelled (or deleted) by its owner; False if unknown now."""
    try:
        task = await store.get_task(task_id)
    except Exception:
        return False
    return task is None or task.cancelled


async def stop_upstream(provider: Provider, upstream_id: str, task_id: str) -> None:
    """Ask ``provider`` to stop a cancelled task's upstream task; best effort, never raises."""
    try:
        await provider.cancel(upstream_id)
    except UpstreamError as exc:
        log.info(
            "task %s cancelled; %s did not stop %s: %s",
            task_id,
            provider.name,
            upstream_id,
            exc.message,
        )
    except Exception:
        log.exception(
            "task %s cancelled; stopping %s at %s failed", task_id, upstream_id, provider.name
        )
    else:
        log.info("task %s cancelled; %s stopped %s", task_id, provider.name, upstream_id)
