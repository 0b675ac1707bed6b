"""The worker loop: claim with a lease, heartbeat progress, store, finish.

A worker runs ``concurrency`` tasks at once in one event loop; rendering itself happens
in the renderers' child processes. Transient faults never fail a task for good (see
"What each fault does to a task" in docs/operations.md):

- the worker dies: its leases expire and another claim resumes the tasks (they stay
  IN_PROGRESS); after ``max_attempts`` claims a task ends ERROR (``worker_lost``);
- a task's render process dies (``RENDER_CRASHED``): that task alone goes back to the
  queue with backoff, the attempt counted; ERROR (``render_crashed``) once they are spent;
- storage cannot take the video (``Unavailable``, an ``OSError``): back to the queue with
  backoff, the attempt given back and a fault counted (ERROR ``storage_unavailable``
  after ``max_faults`` in a row); the worker claims nothing until the scratch and blob
  folders take writes again with ``min_free_bytes`` free;
- the input is refused: FAILED; any other error: ERROR at once.

"Back to the queue" is one conditional move RENDERING -> RENDERING that clears the lease
holder and sets ``lease_until`` to the time of the retry (the claim takes a rendering
task whose ``lease_until`` has passed). Every outcome is logged with its code and the
task id; messages stored for clients carry no server paths nor exception text.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import secrets
import socket
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Mapping
from dataclasses import dataclass
from pathlib import Path

from reelgate import logs, metrics
from reelgate.blobs.local import check_writable
from reelgate.domain.catalog import FPS, frame_size
from reelgate.domain.errors import (
    IllegalTransition,
    LeaseLost,
    ReelgateError,
    RenderError,
    RenderRejected,
    Unavailable,
)
from reelgate.domain.polling import backoff
from reelgate.domain.status import Phase, Status
from reelgate.domain.task import Task
from reelgate.ports import BlobStore, Clock, Move, Renderer, RenderJob, TaskStore
from reelgate.renderers import RENDER_CRASHED
from reelgate.renderers.thumbnail import store_thumbnail
from reelgate.services.tasks import output_key, thumbnail_key
from reelgate.worker.cancels import ended_by_client
from reelgate.worker.wakeup import LocalWakeup

log = logging.getLogger("reelgate.worker")

STORAGE_UNAVAILABLE = "storage_unavailable"
INTERNAL_ERROR = "internal_error"
RENDERING = frozenset({Phase.RENDERING})
# An absolute path (not the path of a URL) or an errno: text for the log, not for clients.
_SERVER_TEXT = re.compile(r"(?<![\w:/.])/[\w.-]+/|\[Errno \d+\]|Traceback \(")


@dataclass(frozen=True, slots=True)
class WorkerConfig:
    """How a worker claims and keeps tasks, and how it retries transient faults."""

    concurrency: int = 1
    lease_seconds: float = 30.0
    max_attempts: int = 3
    poll_interval: float = 2.0
    min_heartbeat_interval: float = 0.5
    grace_seconds: float = 30.0
    scratch_dir: Path | None = None
    models: frozenset[str] | None = None
    min_free_bytes: int = 0  # below this, free in scratch or blob storage: claim nothing
    max_faults: int = 10  # storage faults in a row before a task ends ERROR
    retry_base: float = 1.0  # the first backoff after a fault, in seconds; then doubling
    retry_cap: float = 60.0  # the longest backoff
    storage_recheck: float = 1.0  # how long a good storage probe is trusted, in seconds


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
        self._scratch = config.scratch_dir or Path(tempfile.gettempdir())
        self._running: set[asyncio.Task[None]] = set()
        self._jobs: dict[str, asyncio.Task[None]] = {}  # task id -> its render, while it runs
        self._cancelled: set[str] = set()  # renders being stopped because of a cancel
        self._slots = asyncio.Semaphore(config.concurrency)
        models = set(renderers) if config.models is None else config.models & set(renderers)
        self._models = frozenset(models)
        self._next_expiry = 0.0
        self._storage_good_until = 0.0  # monotonic time until which the last probe holds
        self._storage_fault: str | None = None  # what the last failed probe said

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

        While storage cannot take writes the worker claims nothing and probes again
        every ``poll_interval``. Renders still running ``grace_seconds`` after the stop
        are cancelled and their leases handed back, so another worker resumes them at once.
        """
        try:
            while not stop.is_set():
                if not await _unless_stopped(stop, self._slots.acquire()):
                    break
                if not await self._storage_ready():
                    self._slots.release()
                    await _unless_stopped(stop, asyncio.sleep(self._config.poll_interval))
                    continue
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
        """Render until the queue is empty (burst mode, for tests); return how many ran.

        Tasks backing off after a fault count as not claimable yet: the burst ends
        without them once nothing else runs.
        """
        done = 0
        while True:
            await self._slots.acquire()
            if not await self._storage_ready():
                self._slots.release()
                await asyncio.sleep(self._config.poll_interval)
                continue
            started = await self._claim_batch()
            done += started
            if not started:
                if not self._running:
                    return done
                await asyncio.wait(set(self._running), return_when=asyncio.FIRST_COMPLETED)

    async def _storage_ready(self) -> bool:
        """Whether scratch and blob storage take writes (with the free-space minimum).

        A good probe is trusted for ``storage_recheck`` seconds, or until a task meets
        a storage fault. The first failed probe of a spell, and the recovery, are logged.
        """
        now = time.monotonic()
        if now < self._storage_good_until:
            return True
        try:
            await check_writable(
                self._blobs, [self._scratch], min_free_bytes=self._config.min_free_bytes
            )
        except Exception as exc:
            fault = exc.message if isinstance(exc, ReelgateError) else repr(exc)
            if self._storage_fault is None:
                log.warning("storage cannot take writes: %s; claiming nothing until it can", fault)
            self._storage_fault = fault
            return False
        if self._storage_fault is not None:
            log.info("storage takes writes again; claiming tasks")
            self._storage_fault = None
        self._storage_good_until = now + self._config.storage_recheck
        return True

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
                expired = await self._store.expire_tasks(
                    now=now, max_attempts=self._config.max_attempts
                )
                for task in expired:
                    metrics.task_finished(task, Status.ERROR)
                    log.warning(
                        "task %s ERROR (%s): %s", task.id, task.error_code, task.error_message
                    )
                self._next_expiry = now + self._config.lease_seconds / 2
            claimed = await self._store.claim_tasks(
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
        for task in claimed:
            metrics.task_claimed(task, now)
        return claimed

    def cancel(self, task_id: str) -> bool:
        """Stop the render of ``task_id`` at once, if this worker runs it (it was cancelled).

        Its render process is killed and its scratch file deleted; the task is not
        handed back. False when this worker does not run the task.
        """
        job = self._jobs.get(task_id)
        if job is None or job.done():
            return False
        self._cancelled.add(task_id)
        job.cancel()
        return True

    def _start(self, task: Task) -> None:
        job = asyncio.create_task(self._process(task), name=f"render {task.id}")
        self._running.add(job)
        self._jobs[task.id] = job
        job.add_done_callback(self._running.discard)
        job.add_done_callback(lambda _: self._jobs.pop(task.id, None))
        job.add_done_callback(lambda _: self._slots.release())

    async def _process(self, task: Task) -> None:
        logs.TASK_ID.set(task.id)  # this asyncio task's log records name it (JSON logs)
        log.info("rendering %s (%s, attempt %d)", task.id, task.spec.model, task.attempts)
        started = time.monotonic()
        lease = _Lease(self._store, self._clock, self.id, task, self._config)
        out_path = self._scratch / f"{self.id}.{task.id}.{task.attempts}.mp4"
        try:
            key = await self._stored_output(task)
            size = None  # the bytes stored, video and thumbnail (unknown for a reused one)
            if key is None:
                key = output_key(task.id, task.attempts)
                job = await self._job(task)
                renderer = self._renderers[task.spec.model]
                async with lease.kept():
                    await renderer.render(job, out_path, lease.progress)
                    thumbnail = thumbnail_key(task.id, task.attempts)
                    size = await store_thumbnail(self._blobs, thumbnail, out_path)
                    size += out_path.stat().st_size
                    await self._blobs.put_file(key, out_path)
                metrics.RENDER_DURATION.labels(task.spec.model, metrics.backend_of(task)).observe(
                    time.monotonic() - started
                )
            await self._end(lease, task, Status.SUCCESS, output_key=key, output_bytes=size)
            if lease.cancelled:  # cancelled as it finished: no video to keep
                await self._discard(task)
        except asyncio.CancelledError:
            if task.id not in self._cancelled:  # shutting down: hand the task to another worker
                await asyncio.shield(lease.release())
                raise
            self._cancelled.discard(task.id)  # cancelled by its owner: stop, as asked
            current = asyncio.current_task()
            if current is not None:
                current.uncancel()
            await self._discard(task)
            log.info("task %s cancelled; its render stopped", task.id)
        except LeaseLost:
            if await ended_by_client(self._store, task.id):
                await self._discard(task)
                log.info("task %s was cancelled; its render stopped", task.id)
            else:
                log.warning("lost the lease on %s; another worker has it now", task.id)
        except RenderRejected as exc:
            message = _for_client(exc.message, "the renderer rejected the input")
            await self._end(lease, task, Status.FAILED, code=exc.code, message=message, exc=exc)
        except Exception as exc:
            await self._fault(lease, task, exc)
        finally:
            with contextlib.suppress(OSError):  # storage may be away: the probe says so
                out_path.unlink(missing_ok=True)

    async def _discard(self, task: Task) -> None:
        """Delete what this attempt of a cancelled task may have stored (best effort)."""
        for key in (output_key(task.id, task.attempts), thumbnail_key(task.id, task.attempts)):
            with contextlib.suppress(Exception):
                await self._blobs.delete(key)

    async def _fault(self, lease: _Lease, task: Task, exc: Exception) -> None:
        """Retry a transient fault with backoff; end ERROR for anything else."""
        if isinstance(exc, RenderError) and exc.code == RENDER_CRASHED:
            await self._retry(lease, task, exc, crashed=True)
        elif isinstance(exc, Unavailable | OSError):
            self._storage_good_until = 0.0  # probe again before the next claim
            await self._retry(lease, task, exc, crashed=False)
        elif isinstance(exc, RenderError):
            message = _for_client(exc.message, "the renderer failed")
            await self._end(lease, task, Status.ERROR, code=exc.code, message=message, exc=exc)
        else:
            log.error("task %s: unexpected error while rendering", task.id, exc_info=exc)
            message = "an internal error stopped the render"
            await self._end(lease, task, Status.ERROR, code=INTERNAL_ERROR, message=message)

    async def _retry(self, lease: _Lease, task: Task, exc: Exception, *, crashed: bool) -> None:
        """Back to the queue with backoff, or ERROR once the retries are spent.

        A dead render process counts as an attempt of this task (``max_attempts``); a
        storage fault is the machine's, not the task's: the attempt is given back and a
        fault counted instead (``max_faults`` in a row).
        """
        config = self._config
        if crashed:
            what = "its render process died"
            attempts, faults, tries = task.attempts, task.faults, task.attempts
            spent = attempts >= config.max_attempts
            code, message = (
                RENDER_CRASHED,
                f"the render process died in attempt {attempts}, the last allowed; giving up",
            )
        else:
            what = "storage could not take writes"
            attempts, faults = task.attempts - 1, task.faults + 1
            tries, spent = faults, faults >= config.max_faults
            code, message = (
                STORAGE_UNAVAILABLE,
                f"storage failed {faults} times in a row; giving up",
            )
        detail = _detail(exc)
        if spent:
            log.warning("task %s: %s (%s); no retries left", task.id, what, detail)
            await self._end(lease, task, Status.ERROR, code=code, message=message)
            return
        delay = backoff(tries, base=config.retry_base, cap=config.retry_cap)
        now = self._clock()
        move = Move(
            task.id,
            RENDERING,
            Phase.RENDERING,
            now,
            holder=("lease_owner", self.id),
            fields={
                "lease_owner": None,
                "lease_until": now + delay,
                "attempts": attempts,
                "faults": faults,
            },
            detail=f"{what}; retry in {delay:.0f}s",
        )
        try:
            await self._store.move(move)
        except IllegalTransition:
            if not await ended_by_client(self._store, task.id):
                log.warning("task %s moved on before this worker could retry it", task.id)
            return
        except Exception:  # the lease expires instead, and a later claim retries the task
            log.exception("task %s: %s (%s); could not put it back", task.id, what, detail)
            return
        log.warning(
            "task %s: %s (%s); back to the queue, retry in %.1fs (attempts %d/%d, faults %d/%d)",
            task.id,
            what,
            detail,
            delay,
            attempts,
            config.max_attempts,
            faults,
            config.max_faults,
        )

    async def _end(
        self,
        lease: _Lease,
        task: Task,
        status: Status,
        *,
        output_key: str | None = None,
        output_bytes: int | None = None,
        code: str | None = None,
        message: str | None = None,
        exc: Exception | None = None,
    ) -> None:
        """Finish the task and log the outcome with its code (and, for ERROR, the detail)."""
        if not await lease.finish(
            status,
            output_key=output_key,
            error_code=code,
            error_message=message,
            output_bytes=output_bytes,
        ):
            return
        metrics.task_finished(task, status)
        if status is Status.SUCCESS:
            log.info("task %s SUCCESS (attempt %d)", task.id, task.attempts)
        elif status is Status.FAILED:
            log.info("task %s FAILED (%s): %s", task.id, code, message)
        elif exc is not None:
            log.warning("task %s ERROR (%s): %s [%s]", task.id, code, message, _detail(exc))
        else:
            log.warning("task %s ERROR (%s): %s", task.id, code, message)

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


def _for_client(message: str, fallback: str) -> str:
    """``message`` unless it carries server detail (a path, an errno), else ``fallback``."""
    return fallback if _SERVER_TEXT.search(message) else message


def _detail(exc: BaseException) -> str:
    """What the log keeps of a fault: its message, notes and cause."""
    text = exc.message if isinstance(exc, ReelgateError) else repr(exc)
    parts = [text, *getattr(exc, "__notes__", ())]
    if exc.__cause__ is not None:
        parts.append(f"cause: {exc.__cause__!r}")
    return "; ".join(parts)


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
        self.cancelled = False  # the task was found cancelled (or deleted) at the finish

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

    async def finish(
        self,
        status: Status,
        *,
        output_key: str | None = None,
        error_code: str | None = None,
        error_message: str | None = None,
        output_bytes: int | None = None,
    ) -> bool:
        """End the task in ``status``; False (logged) when that could not be recorded."""
        try:
            await self._store.finish_task(
                self._task_id,
                worker=self._worker,
                now=self._clock(),
                status=status,
                output_key=output_key,
                error_code=error_code,
                error_message=error_message,
                output_bytes=output_bytes,
            )
        except LeaseLost:
            self.cancelled = await ended_by_client(self._store, self._task_id)
            if self.cancelled:
                log.info("task %s was cancelled before it could finish", self._task_id)
            else:
                log.warning("task %s moved on before this worker could finish it", self._task_id)
            return False
        except Exception:  # the lease expires and another attempt finishes the task
            log.exception("could not record the end of task %s (%s)", self._task_id, status)
            return False
        return True
