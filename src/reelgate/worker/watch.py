"""Phase two and three of a remote task: watch it at the provider, then re-host its video.

A watcher holds no lease per task. Its process says it is alive in one row
(``pollers``), and the tasks it watches name it (``watcher``). It takes over tasks
that no live poller holds, in batches, once; from then on it keeps them in memory,
polls each when due (``next_poll``: sooner near the expected finish, slower on long
runs) with bounded concurrency, and writes only what changed: a new status, a
progress step the provider reported, a fault's backoff. So database writes per task
stay constant however long the provider takes. A watcher that dies stops beating;
its tasks are taken over by the others, and any write it still tries fails (each
names the watcher), so two watchers never both decide a task.

Re-hosting streams the provider's video into a scratch file (never whole in memory,
at most ``max_video_bytes``), checks it is a playable MP4 by probing it, stores it,
and ends the task SUCCESS with our own signed URL. Transient failures are retried
with backoff until the provider's URL expires.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
from collections.abc import Mapping
from pathlib import Path

import av

from reelgate import logs, metrics
from reelgate.config import ProviderConfig, WatchConfig
from reelgate.domain.errors import (
    IllegalTransition,
    ReelgateError,
    Unavailable,
    UpstreamBusy,
    UpstreamError,
    UpstreamGone,
    UpstreamRefused,
)
from reelgate.domain.polling import backoff, next_poll
from reelgate.domain.status import Phase, Status
from reelgate.domain.task import Task
from reelgate.ports import BlobStore, Clock, Move, Provider, TaskStore, UpstreamState, UpstreamTask
from reelgate.renderers.thumbnail import store_thumbnail
from reelgate.services.tasks import output_key, thumbnail_key
from reelgate.worker.cancels import ended_by_client, stop_upstream

log = logging.getLogger("reelgate.watch")

WATCHING = frozenset({Phase.WATCHING})
REHOSTING = frozenset({Phase.REHOSTING})
PROGRESS_STEP = 5  # a provider's progress is written when it rose this much
CANCELS_KEPT = 10_000  # cancels remembered, for a task handed over after its cancel


class Watcher:
    """Polls the tasks this process holds and re-hosts their videos."""

    def __init__(
        self,
        store: TaskStore,
        blobs: BlobStore,
        providers: Mapping[str, Provider],
        clock: Clock,
        watch: WatchConfig,
        provider_configs: Mapping[str, ProviderConfig],
        *,
        poller: str,
        scratch_dir: Path,
    ) -> None:
        self._store, self._blobs, self._providers = store, blobs, providers
        self._clock, self._watch = clock, watch
        self._provider_configs = provider_configs
        self.poller = poller
        self._scratch = scratch_dir
        self._held: dict[str, Task] = {}
        self._due: list[tuple[float, int, str]] = []
        self._next: dict[str, float] = {}
        self._order = itertools.count()
        self._changed = asyncio.Event()
        self._polls = asyncio.Semaphore(watch.concurrency)
        self._rehosts = asyncio.Semaphore(watch.rehost_concurrency)
        self._visiting: set[asyncio.Task[None]] = set()
        self._visits: dict[str, asyncio.Task[None]] = {}  # task id -> its visit under way
        self._cancelled: dict[str, float] = {}  # task id -> when its cancel was handled
        self._stopping: set[asyncio.Task[None]] = set()

    @property
    def held(self) -> int:
        return len(self._held)

    def hold(self, task: Task, due: float | None = None) -> None:
        """Watch ``task`` from now on; its first look is at ``due`` (default: its own)."""
        if task.id in self._cancelled:  # its cancel came before its hand-over
            self._spawn_stop(task)
            return
        self._schedule(task, due if due is not None else (task.next_check_at or self._clock()))

    def _schedule(self, task: Task, when: float) -> None:
        self._held[task.id] = task
        self._next[task.id] = when  # an earlier entry in the heap is stale from now on
        heapq.heappush(self._due, (when, next(self._order), task.id))
        self._changed.set()

    def cancel(self, task_id: str) -> None:
        """``task_id`` was cancelled: stop watching it, end its visit under way, and ask
        its provider to stop the upstream task (best effort). Idempotent."""
        now = self._clock()
        if task_id in self._cancelled:
            return
        self._cancelled[task_id] = now
        if len(self._cancelled) > CANCELS_KEPT:  # forget the oldest half
            oldest = sorted(self._cancelled, key=self._cancelled.__getitem__)
            for old in oldest[: CANCELS_KEPT // 2]:
                del self._cancelled[old]
        task = self._held.get(task_id)
        if task is None:
            return
        self._forget(task_id)
        visit = self._visits.pop(task_id, None)
        if visit is not None:
            visit.cancel()
        self._spawn_stop(task)

    def _spawn_stop(self, task: Task) -> None:
        self._cancelled.setdefault(task.id, self._clock())
        stop = asyncio.create_task(self._stop(task), name=f"stop {task.id}")
        self._stopping.add(stop)
        stop.add_done_callback(self._stopping.discard)

    async def _stop(self, task: Task) -> None:
        """After a cancel: the upstream task stopped, and a video re-hosted meanwhile deleted."""
        provider = self._providers.get(task.provider or "")
        if provider is not None and task.upstream_id is not None:
            await stop_upstream(provider, task.upstream_id, task.id)
        if task.phase is Phase.REHOSTING:
            attempt = max(task.attempts, 1)
            for key in (output_key(task.id, attempt), thumbnail_key(task.id, attempt)):
                with contextlib.suppress(Exception):
                    await self._blobs.delete(key)

    def hint(self, task_id: str) -> bool:
        """Look at a held task at once (the provider called back); False if not held."""
        task = self._held.get(task_id)
        if task is None:
            return False
        self.hold(task, self._clock())
        return True

    async def take_over(self) -> int:
        """Take over watched tasks that no live poller holds; return how many."""
        room = self._watch.batch
        tasks = await self._store.claim_watch(poller=self.poller, now=self._clock(), limit=room)
        for task in tasks:
            self.hold(task)
        if tasks:
            log.info("watching %d more upstream tasks (%d in all)", len(tasks), self.held)
        return len(tasks)

    async def run(self) -> None:
        """Visit each held task when it is due, until cancelled."""
        try:
            while True:
                if not self._due:
                    self._changed.clear()
                    await self._changed.wait()
                    continue
                when, _, task_id = self._due[0]
                wait = when - self._clock()
                if wait > 0:
                    self._changed.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._changed.wait(), wait)
                    continue
                heapq.heappop(self._due)
                task = self._held.get(task_id)
                if task is None or self._next.get(task_id) != when:
                    continue  # no longer held, or a stale entry
                del self._next[task_id]
                await self._polls.acquire()
                visit = asyncio.create_task(self._visit(task))
                self._visiting.add(visit)
                self._visits[task_id] = visit
                visit.add_done_callback(self._visited)
        finally:
            for visit in list(self._visiting):
                visit.cancel()
            await asyncio.gather(*self._visiting, return_exceptions=True)

    def _visited(self, visit: asyncio.Task[None]) -> None:
        self._visiting.discard(visit)
        for task_id in [t for t, v in self._visits.items() if v is visit]:
            del self._visits[task_id]
        self._polls.release()

    async def _visit(self, task: Task) -> None:
        logs.TASK_ID.set(task.id)  # this asyncio task's log records name it (JSON logs)
        try:
            if task.phase is Phase.REHOSTING:
                self._polls.release()  # a download holds a re-host slot, not a poll slot
                try:
                    async with self._rehosts:
                        await self._rehost(task)
                finally:
                    await self._polls.acquire()
            else:
                await self._poll(task)
        except IllegalTransition:
            self._forget(task.id)
            if task.id in self._cancelled:
                return
            if await ended_by_client(self._store, task.id):  # its cancel notice was missed
                self._spawn_stop(task)
            else:
                log.info("task %s moved on elsewhere; no longer watching it", task.id)
        except Exception:
            log.exception("watching task %s failed; looking again later", task.id)
            self._later(task, self._watch.max_interval)

    def _later(self, task: Task, delay: float) -> None:
        self._schedule(task, self._clock() + delay)

    def _forget(self, task_id: str) -> None:
        self._held.pop(task_id, None)
        self._next.pop(task_id, None)

    # watching ------------------------------------------------------------------------

    async def _poll(self, task: Task) -> None:
        provider = self._providers.get(task.provider or "")
        if provider is None or task.upstream_id is None:
            await self._end(task, Status.ERROR, "upstream_unconfigured", "the provider is gone")
            return
        try:
            state = await provider.get(task.upstream_id)
        except UpstreamGone as exc:
            await self._end(task, Status.ERROR, exc.code, "the provider no longer has the task")
            return
        except UpstreamError as exc:
            await self._fault(task, exc)
            return
        now = self._clock()
        if state.state in (UpstreamState.QUEUED, UpstreamState.RUNNING):
            changes: dict[str, object] = {}
            if task.faults:
                changes["faults"] = 0
            if state.progress is not None and state.progress >= task.progress + PROGRESS_STEP:
                changes["progress"] = min(state.progress, 99)
            if changes:
                task = await self._store.move(
                    Move(
                        task.id,
                        WATCHING,
                        Phase.WATCHING,
                        now,
                        holder=("watcher", self.poller),
                        fields=changes,
                        record="progress" in changes,
                    )
                )
            self._later(task, self._interval(task, now))
        elif state.state is UpstreamState.SUCCEEDED:
            await self._succeeded(task, state, now)
        elif state.state is UpstreamState.FAILED:
            # A refusal (moderation, parameters) is FAILED; the provider's own internal
            # error is ERROR, as API.md draws the line.
            internal = state.error_code == "upstream_error"
            await self._end(
                task,
                Status.ERROR if internal else Status.FAILED,
                state.error_code or "upstream_failed",
                state.error_message or "the provider could not make this video",
            )
        elif state.state is UpstreamState.EXPIRED:
            message = "the provider let the task expire before it finished"
            await self._end(task, Status.ERROR, "upstream_expired", message)
        else:
            message = "the task was cancelled at the provider"
            await self._end(task, Status.ERROR, "upstream_cancelled", message)

    def _interval(self, task: Task, now: float) -> float:
        return next_poll(
            elapsed=now - (task.submitted_at or now),
            expected=task.expected_seconds,
            min_interval=self._watch.min_interval,
            max_interval=self._watch.max_interval,
        )

    async def _succeeded(self, task: Task, state: UpstreamTask, now: float) -> None:
        if not state.video_url:
            await self._fault(task, UpstreamBusy("the provider reported no video URL yet"))
            return
        if task.provider and task.upstream_model and task.submitted_at:
            spec = task.spec
            with contextlib.suppress(Exception):  # learning is a nicety
                await self._store.learn_duration(
                    task.provider,
                    task.upstream_model,
                    spec.seconds,
                    spec.resolution,
                    now - task.submitted_at,
                )
            metrics.UPSTREAM_TASK_DURATION.labels(task.provider, task.spec.model).observe(
                max(0.0, now - task.submitted_at)
            )
        task = await self._store.move(
            Move(
                task.id,
                WATCHING,
                Phase.REHOSTING,
                now,
                holder=("watcher", self.poller),
                fields={
                    "upstream_url": state.video_url,
                    "upstream_url_expires": state.video_expires_at,
                    "usage_tokens": state.usage_tokens,
                    "progress": task.shown_progress(now),
                    "faults": 0,
                },
                detail="finished upstream; re-hosting",
            )
        )
        self._later(task, 0.0)

    async def _fault(self, task: Task, exc: ReelgateError) -> None:
        """A transient fault: back off (durably), or end ERROR once the faults are spent."""
        faults = task.faults + 1
        now = self._clock()
        expires = task.upstream_url_expires
        if task.phase is Phase.REHOSTING and expires is not None:
            spent = now >= expires  # downloads are retried until the provider's URL expires
        else:
            spent = faults > self._watch.max_faults
        if spent:
            expired = expires is not None and task.phase is Phase.REHOSTING
            code = "upstream_video_expired" if expired else exc.code
            message = f"the provider stayed unavailable ({faults} faults in a row)"
            await self._end(task, Status.ERROR, code, message)
            return
        retry_after = exc.retry_after if isinstance(exc, UpstreamError) else None
        watch = self._watch
        delay = backoff(
            faults, base=watch.min_interval, cap=watch.max_interval * 4, retry_after=retry_after
        )
        log.warning("task %s: %s; next look in %.0fs", task.id, exc.message, delay)
        task = await self._store.move(
            Move(
                task.id,
                frozenset({task.phase}),
                task.phase,
                now,
                holder=("watcher", self.poller),
                fields={"faults": faults, "next_check_at": now + delay},
                record=False,
            )
        )
        self._later(task, delay)

    async def _end(
        self,
        task: Task,
        outcome: Status,
        code: str | None,
        message: str,
        *,
        output_bytes: int | None = None,
    ) -> None:
        fields: dict[str, object] = {}
        if outcome is not Status.SUCCESS:
            fields = {"error_code": code, "error_message": message}
        else:
            fields = {"output_key": message, "output_bytes": output_bytes}
        await self._store.move(
            Move(
                task.id,
                frozenset({task.phase}),
                Phase.DONE,
                self._clock(),
                outcome=outcome,
                holder=("watcher", self.poller),
                fields=fields,
                detail=code,
            )
        )
        self._forget(task.id)
        metrics.task_finished(task, outcome)
        if outcome is Status.SUCCESS:
            log.info("task %s SUCCESS (from %s)", task.id, task.provider)
        else:
            log.info("task %s %s: %s (%s)", task.id, outcome, code, message)

    # re-hosting ----------------------------------------------------------------------

    async def _rehost(self, task: Task) -> None:
        provider = self._providers.get(task.provider or "")
        if provider is None or task.upstream_id is None or task.upstream_url is None:
            await self._end(task, Status.ERROR, "upstream_unconfigured", "the provider is gone")
            return
        limit = self._provider_configs[provider.name].max_video_bytes
        upstream = UpstreamTask(
            UpstreamState.SUCCEEDED,
            video_url=task.upstream_url,
            video_expires_at=task.upstream_url_expires,
        )
        scratch = self._scratch / f"{self.poller}.{task.id}.upstream.mp4"
        try:
            await provider.download(task.upstream_id, upstream, scratch, limit)
            await asyncio.to_thread(probe_mp4, scratch)
            key = output_key(task.id, max(task.attempts, 1))
            thumbnail = thumbnail_key(task.id, max(task.attempts, 1))
            size = await store_thumbnail(self._blobs, thumbnail, scratch)
            size += scratch.stat().st_size
            await self._blobs.put_file(key, scratch)
        except (UpstreamGone, UpstreamRefused) as exc:
            await self._end(task, Status.ERROR, exc.code, exc.message)
            return
        except (UpstreamError, Unavailable) as exc:
            await self._fault(task, exc)
            return
        except OSError as exc:  # the scratch folder or local storage: transient
            log.warning("task %s: storing the video failed: %s", task.id, exc)
            await self._fault(task, Unavailable("storage is not writable"))
            return
        finally:
            scratch.unlink(missing_ok=True)
        await self._end(task, Status.SUCCESS, None, key, output_bytes=size)


def probe_mp4(path: Path) -> None:
    """Raise ``UpstreamRefused`` unless ``path`` is an MP4 with a decodable video stream."""
    try:
        with av.open(str(path)) as container:
            names = set(container.format.name.split(","))
            if not names & {"mp4", "mov"} or not container.streams.video:
                raise UpstreamRefused(
                    "the provider's file is not an MP4 video", code="upstream_bad_video"
                )
            stream = container.streams.video[0]
            for _ in container.decode(stream):
                return  # one frame decodes: the file is playable
    except av.error.FFmpegError as exc:
        raise UpstreamRefused(
            "the provider's file is not a playable video", code="upstream_bad_video"
        ) from exc
    raise UpstreamRefused("the provider's video has no frames", code="upstream_bad_video")
