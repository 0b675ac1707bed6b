"""The retention janitor: deletes finished tasks' files once they are old enough.

Any number of processes may run one (every worker process does, when retention is
configured); a lease row in the database (``TaskStore.take_lease``) lets one of them
work at a time, and each batch is marked by one conditional statement
(``TaskStore.expire_files``) that only the lease holder's can match, so no file is
deleted twice and no task is marked twice. A batch is marked first, then its files are
deleted: from the moment of the mark, reads answer without a video link, so no client
gets a link to a file about to vanish. Files that cannot be deleted (storage away) are
unmarked again, for the next run. Only tasks in phase DONE qualify: nothing a running
render or upstream still needs is ever touched.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from dataclasses import dataclass, field

from reelgate.domain.retention import LEASE, FileKind, Retention
from reelgate.domain.task import Task
from reelgate.ports import BlobStore, Clock, TaskStore
from reelgate.services.lifecycle import stored_keys
from reelgate.services.tasks import output_key, thumbnail_key

log = logging.getLogger("reelgate.retention")

DELETES_AT_ONCE = 16  # blob deletes in flight per janitor


@dataclass
class Swept:
    """What one kind of files came to in a run: the tasks whose files were deleted, and
    the bytes recorded for them (files stored before migration 0009 count 0)."""

    tasks: int = 0
    bytes: int = 0
    failed: int = 0  # tasks whose files could not be deleted (unmarked, for a later run)


@dataclass
class Sweep:
    """One janitor run: ``ran`` is False when another process held the lease."""

    ran: bool = True
    dry_run: bool = False
    kinds: dict[FileKind, Swept] = field(default_factory=dict)


class Janitor:
    """Deletes the files ``retention`` says are too old, in batches of ``batch`` tasks."""

    def __init__(
        self,
        store: TaskStore,
        blobs: BlobStore,
        clock: Clock,
        retention: Retention,
        *,
        batch: int = 200,
        interval: float = 300.0,
        lease_seconds: float = 120.0,
        holder: str | None = None,
    ) -> None:
        self._store = store
        self._blobs = blobs
        self._clock = clock
        self.retention = retention
        self._batch = batch
        self._interval = interval
        self._lease_seconds = lease_seconds
        self.holder = holder or f"janitor-{secrets.token_hex(6)}"
        self._deletes = asyncio.Semaphore(DELETES_AT_ONCE)

    async def run(self, stop: asyncio.Event) -> None:
        """Sweep every ``interval`` seconds until ``stop``; a failed sweep is logged."""
        while not stop.is_set():
            try:
                await self.sweep()
            except Exception:  # the database or storage is away: try again next time
                log.exception("retention: the sweep failed; trying again later")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self._interval)

    async def sweep(self, *, dry_run: bool = False) -> Sweep:
        """Expire every file older than the retention, a batch at a time (or, with
        ``dry_run``, count what would be); ``ran`` False when another holds the lease."""
        if dry_run:
            return await self._preview()
        now = self._clock()
        if not await self._hold(now):
            return Sweep(ran=False)
        result = Sweep()
        try:
            for kind in FileKind:
                age = self.retention.age(kind)
                if age is not None:
                    result.kinds[kind] = await self._sweep_kind(kind, age)
        finally:
            await self._store.drop_lease(LEASE, self.holder)
        for kind, swept in result.kinds.items():
            if swept.tasks:
                log.info(
                    "retention: %s of %d tasks deleted (%d bytes; %d failed)",
                    kind.value,
                    swept.tasks,
                    swept.bytes,
                    swept.failed,
                )
        return result

    async def _hold(self, now: float) -> bool:
        return await self._store.take_lease(
            LEASE, self.holder, now=now, until=now + self._lease_seconds
        )

    async def _preview(self) -> Sweep:
        result = Sweep(dry_run=True)
        now = self._clock()
        for kind in FileKind:
            age = self.retention.age(kind)
            if age is not None:
                count, size = await self._store.expirable(kind, before=now - age)
                result.kinds[kind] = Swept(tasks=count, bytes=size)
        return result

    async def _sweep_kind(self, kind: FileKind, age: float) -> Swept:
        swept = Swept()
        while True:
            now = self._clock()
            if not await self._hold(now):  # renewed per batch; lost: another one goes on
                log.warning("retention: lost the lease; stopping this sweep")
                return swept
            tasks = await self._store.expire_files(
                kind, before=now - age, now=now, limit=self._batch, holder=self.holder
            )
            if not tasks:
                return swept
            outcomes = await asyncio.gather(*(self._delete(kind, task) for task in tasks))
            failed = [task.id for task, deleted in zip(tasks, outcomes, strict=True) if not deleted]
            if failed:
                await self._store.restore_files(kind, failed)
            for task, deleted in zip(tasks, outcomes, strict=True):
                if deleted:
                    swept.tasks += 1
                    size = task.output_bytes if kind is FileKind.OUTPUTS else task.input_bytes
                    swept.bytes += size or 0
            swept.failed += len(failed)
            if failed or len(tasks) < self._batch:
                return swept  # what failed waits for the next run, not this loop

    async def _delete(self, kind: FileKind, task: Task) -> bool:
        """Delete ``task``'s ``kind`` files; False when storage failed.

        The video that links point at goes last: when a delete fails, the task is
        restored (its link shown again), and that link must still reach its file.
        """
        keys = sorted(files_of(task, kind), key=lambda key: key == task.output_key)
        try:
            for key in keys:
                async with self._deletes:
                    await self._blobs.delete(key)
        except Exception as exc:
            log.warning("retention: cannot delete the %s of %s: %s", kind.value, task.id, exc)
            return False
        return True


def files_of(task: Task, kind: FileKind) -> list[str]:
    """The blob keys of ``task``'s ``kind`` files (every attempt's, for outputs)."""
    if kind is FileKind.INPUTS:
        return [] if task.spec.input_key is None else [task.spec.input_key]
    keys = stored_keys(task, output_key, thumbnail_key)
    return [key for key in keys if key != task.spec.input_key]
