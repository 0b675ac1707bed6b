"""The worker loop: claim with a lease, heartbeat progress, store, finish.

A worker runs ``concurrency`` tasks at once in one event loop; rendering itself
happens in the renderers' process pools. If the process dies, its leases
expire and another worker resumes the tasks (they stay IN_PROGRESS); after
``max_attempts`` claims a task ends in ERROR.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import socket
import tempfile
from collections.abc import AsyncIterator, Awaitable, Mapping
from dataclasses import dataclass
from pathlib import Path

from reelgate.domain.catalog import FPS, frame_size
from reelgate.domain.errors import LeaseLost, RenderError, RenderRejected, Unavailable
from reelgate.domain.status import Status
from reelgate.domain.task import Task
from reelgate.ports import BlobStore, Clock, Renderer, RenderJob, TaskStore
from reelgate.services.tasks import output_key
from reelgate.worker.wakeup import LocalWakeup

log = logging.getLogger("reelgate.worker")


@dataclass(frozen=True, slots=True)
class WorkerConfig:
    """How a worker claims and keeps tasks."""

    concurrency: int = 1
    lease_seconds: float = 30.0
    max_attempts: int = 3
    poll_interval: float = 2.0
    min_heartbeat_interval: float = 0.5
    grace_seconds: float = 30.0
    scratch_dir: Path | None = None
    models: frozenset[str] | None = None


class Worker:
    """Claims tasks from the store and renders them until stopped."""

    def __init__(
        self,
        store: TaskStore,
        blobs: BlobStore,
        renderers: Mapping[str, Renderer],
        clock: Clock,
        wakeup: LocalWakeup,
        config: WorkerConfig,
    ) -> None:
        self.id = f"{socket.gethostname()}-{secrets.token_hex(4)}"
        self._store = store
        self._blobs = blobs
        self._renderers = renderers
        self._clock = clock
        self._wakeup = wakeup
        self._config = config
        self._running: set[asyncio.Task[None]] = set()
        self._slots = asyncio.Semaphore(config.concurrency)
        models = set(renderers) if config.models is None else config.models & set(renderers)
        self._models = frozenset(models)
        self._next_expiry = 0.0

    @property
    def models(self) -> frozenset[str] | None:
        """The models this worker was asked to serve (None: all it can)."""
        return self._config.models

    @property
    def serves_any(self) -> bool:
        """Whether any model this worker may take renders locally."""
        return bool(self._models)

    async def run(self, stop: asyncio.Event) -> None:
        """Claim and render until ``stop`` is set, then shut down gracefully.

        Renders still running ``grace_seconds`` after the stop are cancelled and
        their leases handed back, so another worker resumes them at once.
        """
        try:
            while not stop.is_set():
                if not await _unless_stopped(stop, self._slots.acquire()):
                    break
                if not await self._claim_batch():
                    await _unless_stopped(stop, self._wakeup.wait(self._config.poll_interval))
        finally:
            await self._drain()

    async def _drain(self) -> None:
        if not self._running:
            return
        log.info(
            "waiting up to %.0fs for %d running renders",
            self._config.grace_seconds,
            len(self._running),
        )
        _, pending = await asyncio.wait(set(self._running), timeout=self._config.grace_seconds)
        for job in pending:
            job.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    async def run_burst(self) -> int:
        """Render until the queue is empty (burst mode, for tests); return how many ran."""
        done = 0
        while True:
            await self._slots.acquire()
            started = await self._claim_batch()
            done += started
            if not started:
                if not self._running:
                    return done
                await asyncio.wait(set(self._running), return_when=asyncio.FIRST_COMPLETED)

    async def _claim_batch(self) -> int:
        """Holding one slot: claim for it and every other free slot in one statement.

        Starts what came, gives back the slots left over; returns how many started.
        """
        slots = 1
        while not self._slots.locked():
            await self._slots.acquire()  # free: returns at once
            slots += 1
        tasks = await self._claim(slots)
        for task in tasks:
            self._start(task)
        for _ in range(slots - len(tasks)):
            self._slots.release()
        return len(tasks)

    async def _claim(self, limit: int) -> list[Task]:
        now = self._clock()
        try:
            if now >= self._next_expiry:  # leases expire no sooner: no need to look each time
                await self._store.expire_tasks(now=now, max_attempts=self._config.max_attempts)
                self._next_expiry = now + self._config.lease_seconds / 2
            return await self._store.claim_tasks(
                worker=self.id,
                now=now,
                lease_seconds=self._config.lease_seconds,
                max_attempts=self._config.max_attempts,
                models=self._models,
                limit=limit,
            )
        except Exception:
            log.exception(
                "claiming a task failed; retrying after %.1fs", self._config.poll_interval
            )
            await asyncio.sleep(self._config.poll_interval)
            return []

    def _start(self, task: Task) -> None:
        job = asyncio.create_task(self._process(task), name=f"render {task.id}")
        self._running.add(job)
        job.add_done_callback(self._running.discard)
        job.add_done_callback(lambda _: self._slots.release())

    async def _process(self, task: Task) -> None:
        log.info("rendering %s (%s, attempt %d)", task.id, task.spec.model, task.attempts)
        lease = _Lease(self._store, self._clock, self.id, task, self._config)
        scratch = self._config.scratch_dir or Path(tempfile.gettempdir())
        out_path = scratch / f"{self.id}.{task.id}.{task.attempts}.mp4"
        try:
            key = await self._stored_output(task)
            if key is None:
                key = output_key(task.id, task.attempts)
                job = await self._job(task)
                renderer = self._renderers[task.spec.model]
                async with lease.kept():
                    await renderer.render(job, out_path, lease.progress)
                    await self._blobs.put_file(key, out_path)
            await lease.finish(Status.SUCCESS, output_key=key)
            log.info("task %s SUCCESS", task.id)
        except asyncio.CancelledError:  # shutting down: hand the task to another worker
            await asyncio.shield(lease.release())
            raise
        except LeaseLost:
            log.warning("lost the lease on %s; another worker has it now", task.id)
        except Unavailable as exc:  # the lease expires; a later attempt retries the task
            log.warning("task %s: %s; it will be retried", task.id, exc.message)
        except RenderRejected as exc:
            await lease.finish(Status.FAILED, error_code=exc.code, error_message=exc.message)
        except RenderError as exc:
            await lease.finish(Status.ERROR, error_code=exc.code, error_message=exc.message)
        except Exception as exc:
            log.exception("task %s failed", task.id)
            await lease.finish(Status.ERROR, error_code="internal_error", error_message=str(exc))
        finally:
            out_path.unlink(missing_ok=True)

    async def _stored_output(self, task: Task) -> str | None:
        """An earlier attempt's output, stored before its worker died: no need to render again.

        Blobs are put atomically, so a stored one is whole.
        """
        for attempt in range(task.attempts - 1, 0, -1):
            key = output_key(task.id, attempt)
            if await self._blobs.exists(key):
                log.info("task %s: reusing the output of attempt %d", task.id, attempt)
                return key
        return None

    async def _job(self, task: Task) -> RenderJob:
        spec = task.spec
        width, height = frame_size(spec.size, spec.resolution)
        image = None if spec.input_key is None else await self._blobs.get_bytes(spec.input_key)
        return RenderJob(task.id, spec.model, spec.prompt, spec.seconds, width, height, FPS, image)


async def _unless_stopped(stop: asyncio.Event, awaitable: Awaitable[object]) -> bool:
    """Await ``awaitable`` unless ``stop`` is set first; True when it finished."""
    job = asyncio.ensure_future(awaitable)
    stopper = asyncio.ensure_future(stop.wait())
    done, _ = await asyncio.wait({job, stopper}, return_when=asyncio.FIRST_COMPLETED)
    stopper.cancel()
    if job in done:
        return True
    job.cancel()
    return False


class _Lease:
    """Keeps one task's lease alive and writes its progress, throttled."""

    def __init__(
        self, store: TaskStore, clock: Clock, worker: str, task: Task, config: WorkerConfig
    ) -> None:
        self._store, self._clock, self._worker = store, clock, worker
        self._task_id = task.id
        self._config = config
        self._progress = task.progress
        self._written_at = clock()  # the claim has just written the lease
        self._lost: LeaseLost | None = None

    async def progress(self, value: int) -> None:
        if self._lost is not None:
            raise self._lost
        if value <= self._progress:
            return
        self._progress = value
        if self._clock() - self._written_at >= self._config.min_heartbeat_interval:
            try:
                await self._beat()
            except LeaseLost:
                raise
            except Exception as exc:  # a passing database error: the keeper retries
                log.warning("progress of %s not saved: %s", self._task_id, exc)

    async def _beat(self) -> None:
        now = self._clock()
        try:
            await self._store.heartbeat(
                self._task_id,
                worker=self._worker,
                now=now,
                lease_seconds=self._config.lease_seconds,
                progress=min(self._progress, 99),
            )
        except LeaseLost as exc:
            self._lost = exc
            raise
        self._written_at = now

    @contextlib.asynccontextmanager
    async def kept(self) -> AsyncIterator[None]:
        """Heartbeat every third of the lease while the body runs; raise if the lease is lost."""
        body = asyncio.current_task()
        assert body is not None

        async def keep() -> None:
            while True:
                await asyncio.sleep(self._config.lease_seconds / 3)
                try:
                    await self._beat()
                except LeaseLost:
                    body.cancel()
                    return
                except Exception:
                    log.exception("heartbeat of %s failed; will retry", self._task_id)

        keeper = asyncio.create_task(keep())
        try:
            yield
        except asyncio.CancelledError:
            if self._lost is not None:
                raise self._lost from None
            raise
        finally:
            keeper.cancel()
        if self._lost is not None:
            raise self._lost

    async def release(self) -> None:
        try:
            await self._store.release_task(self._task_id, worker=self._worker, now=self._clock())
            log.info("handed task %s back", self._task_id)
        except Exception:  # the lease expires instead
            log.exception("could not hand task %s back", self._task_id)

    async def finish(self, status: Status, **fields: str | None) -> None:
        try:
            await self._store.finish_task(
                self._task_id, worker=self._worker, now=self._clock(), status=status, **fields
            )
        except LeaseLost:
            log.warning("task %s moved on before this worker could finish it", self._task_id)
        except Exception:  # the lease expires and another attempt finishes the task
            log.exception("could not record the end of task %s", self._task_id)
