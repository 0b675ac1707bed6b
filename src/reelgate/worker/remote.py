"""The remote side of a worker: submit to providers, watch, re-host (see ``submit`` and
``watch``), plus the poller heartbeat that lets other processes take over after a crash."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path

from reelgate.domain.task import Task
from reelgate.ports import BlobStore, Claimed, Clock, Provider, TaskStore
from reelgate.worker.submit import SubmitConfig, Submitter
from reelgate.worker.wakeup import LocalWakeup
from reelgate.worker.watch import Watcher

log = logging.getLogger("reelgate.remote")

SUBMIT_CONCURRENCY = 16  # submissions in flight per process


class RemoteRunner:
    """Runs the submit loop, the watch loop and the heartbeat of one process."""

    def __init__(
        self,
        store: TaskStore,
        blobs: BlobStore,
        providers: Mapping[str, Provider],
        clock: Clock,
        wakeup: LocalWakeup,
        config: SubmitConfig,
        *,
        worker: str,
        scratch_dir: Path,
        input_url: Callable[[str], str],
        callback_url: Callable[[Task], str] | None = None,
        poll_interval: float = 2.0,
        grace_seconds: float = 30.0,
    ) -> None:
        self.id = worker
        self._store, self._clock, self._wakeup = store, clock, wakeup
        self._poll_interval = poll_interval
        self._grace = grace_seconds
        self._ttl = config.watch.poller_ttl  # silent this long: dead; it beats every third
        self.watcher = Watcher(
            store,
            blobs,
            providers,
            clock,
            config.watch,
            config.providers,
            poller=worker,
            scratch_dir=scratch_dir,
        )
        self.submitter = Submitter(
            store,
            blobs,
            providers,
            clock,
            config,
            worker=worker,
            on_accepted=self.watcher.hold,
            input_url=input_url,
            callback_url=callback_url,
        )
        self._submitting: set[asyncio.Task[None]] = set()
        self._slots = asyncio.Semaphore(SUBMIT_CONCURRENCY)

    def cancel(self, task_id: str) -> None:
        """``task_id`` was cancelled: stop watching it and stop it upstream (best effort).

        A submission under way is not cut short (the provider may have the task by
        then): once its upstream id is known, the submitter finds the task cancelled and
        cancels it there.
        """
        self.watcher.cancel(task_id)

    async def run(self, stop: asyncio.Event) -> None:
        """Submit, watch and beat until ``stop``; then hand the watched tasks back."""
        await self._beat()
        loops = [
            asyncio.create_task(self._forever(self._beat, self._ttl / 3), name="poller beat"),
            asyncio.create_task(self._forever(self.watcher.take_over, self._ttl / 6)),
            asyncio.create_task(self.watcher.run(), name="watch"),
            asyncio.create_task(self._submit_loop(stop), name="submit"),
        ]
        try:
            await stop.wait()
        finally:
            for loop in loops:
                loop.cancel()
            await asyncio.gather(*loops, return_exceptions=True)
            if self._submitting:  # a submission cut short would be a lost one: let it end
                await asyncio.wait(set(self._submitting), timeout=self._grace)
            with contextlib.suppress(Exception):
                await self._store.drop_poller(self.id, now=self._clock())

    async def _beat(self) -> None:
        now = self._clock()
        await self._store.beat_poller(self.id, now=now, alive_until=now + self._ttl)

    async def _forever(self, step: Callable[[], Awaitable[object]], every: float) -> None:
        while True:
            try:
                await step()
            except Exception as exc:
                log.warning("%s failed: %s; trying again in %.0fs", step.__name__, exc, every)
            await asyncio.sleep(every)

    async def _submit_loop(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await self._slots.acquire()
            free = 1
            while not self._slots.locked():
                await self._slots.acquire()
                free += 1
            try:
                claimed = await self.submitter.claim(free)
            except Exception as exc:
                log.warning("claiming tasks to submit failed: %s", exc)
                claimed = []
            for item in claimed:
                self._start(item)
            for _ in range(free - len(claimed)):
                self._slots.release()
            if not claimed:
                await self._wakeup.wait(self._poll_interval)

    def _start(self, claimed: Claimed) -> None:
        job = asyncio.create_task(self.submitter.submit(claimed), name=f"submit {claimed.task.id}")
        self._submitting.add(job)
        job.add_done_callback(self._submitting.discard)
        job.add_done_callback(lambda _: self._slots.release())
