"""Phase one of a remote task: submit it to a provider, exactly once.

The claim records the intent (provider, model, time, lease) durably before any
request goes out; the provider's task id is recorded right after its answer. A
submitter that dies in between leaves a SUBMITTING task whose lease expires; the
next claim returns it as ``lost``. The provider may or may not have it, so it is
never simply sent again: the provider is asked to find it (``find_lost``), and if it
cannot, the task ends ERROR ``upstream_submit_unknown`` — unless the operator set
``resubmit_lost = true`` for that provider, accepting a possible second charge.

A provider that does not accept the task now (429, overload, 5xx, no connection)
surely does not have it: the next route with room is tried at once; with none, the
task goes back to the queue (still SUBMITTED) with backoff, and ends ERROR
``upstream_unavailable`` after ``max_submit_tries``. A refusal (moderation, an
invalid parameter) ends it FAILED with the provider's stable code.
"""

from __future__ import annotations

import asyncio
import logging
import mimetypes
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace

from reelgate import logs, metrics
from reelgate.config import ProviderConfig, WatchConfig
from reelgate.domain.errors import (
    IllegalTransition,
    UpstreamBusy,
    UpstreamError,
    UpstreamRefused,
    UpstreamUncertain,
)
from reelgate.domain.polling import backoff
from reelgate.domain.progress import default_expected
from reelgate.domain.status import Phase, Status
from reelgate.domain.task import Task
from reelgate.ports import BlobStore, Claimed, Clock, Move, Provider, TaskStore, UpstreamJob
from reelgate.worker.cancels import ended_by_client, stop_upstream

log = logging.getLogger("reelgate.submit")

SUBMITTING = frozenset({Phase.SUBMITTING})
REFUSED_US = "upstream_refused"  # the provider refused our key or the model, not the task
RECORD_TRIES = 5  # the upstream has the task: try hard to write its id down


@dataclass(frozen=True, slots=True)
class SubmitConfig:
    """What the submitter needs of the configuration."""

    routes: Mapping[str, Sequence[tuple[str, str]]]
    providers: Mapping[str, ProviderConfig]
    watch: WatchConfig

    @property
    def caps(self) -> dict[str, int]:
        return {name: p.max_concurrent for name, p in self.providers.items()}

    @property
    def lease_seconds(self) -> float:
        """Longer than any submit request can take, so a live submitter keeps its task."""
        slowest = max((p.timeout + p.connect_timeout for p in self.providers.values()), default=0)
        return slowest * 1.5 + 5


class Submitter:
    """Submits claimed tasks; hands each accepted one to ``on_accepted`` (the watcher)."""

    def __init__(
        self,
        store: TaskStore,
        blobs: BlobStore,
        providers: Mapping[str, Provider],
        clock: Clock,
        config: SubmitConfig,
        *,
        worker: str,
        on_accepted: Callable[[Task], None],
        input_url: Callable[[str], str],
        callback_url: Callable[[Task], str] | None = None,
    ) -> None:
        self._store, self._blobs, self._providers = store, blobs, providers
        self._clock, self._config, self._worker = clock, config, worker
        self._on_accepted = on_accepted
        self._input_url = input_url
        self._callback_url = callback_url

    async def claim(self, limit: int) -> list[Claimed]:
        now = self._clock()
        claimed = await self._store.claim_submits(
            worker=self._worker,
            now=now,
            lease_seconds=self._config.lease_seconds,
            routes=self._config.routes,
            caps=self._config.caps,
            limit=limit,
        )
        for one in claimed:
            if not one.lost:
                metrics.task_claimed(one.task, now)
        return claimed

    async def submit(self, claimed: Claimed) -> None:
        """Carry one claimed task through its submission; never raises."""
        task = claimed.task
        logs.TASK_ID.set(task.id)  # this asyncio task's log records name it (JSON logs)
        try:
            await self._submit(task, claimed.lost)
        except IllegalTransition:
            if await ended_by_client(self._store, task.id):
                log.info("task %s was cancelled while it was being submitted", task.id)
            else:
                log.warning("task %s moved on while it was being submitted", task.id)
        except Exception:
            log.exception("submitting task %s failed; its lease will expire", task.id)

    async def _submit(self, task: Task, lost: bool) -> None:
        assert task.provider is not None
        provider = self._providers.get(task.provider)
        if provider is None:
            await self._end(task, "upstream_unconfigured", f"provider {task.provider} is gone")
            return
        job = await self._job(task, provider)
        if lost:
            try:
                if await self._reconcile(task, provider, job):
                    return
            except UpstreamError as exc:
                await self._undecided(task, exc)
                return
            if not self._config.providers[provider.name].resubmit_lost:
                await self._end(task, "upstream_submit_unknown", _UNKNOWN)
                return
            log.warning("task %s: resubmitting a lost submission (resubmit_lost)", task.id)
        tried: list[str] = []
        advice: list[float | None] = []  # each refusing provider's Retry-After
        while True:
            try:
                upstream_id = await provider.submit(job)
            except UpstreamRefused as exc:
                if exc.code != REFUSED_US:  # the task itself was refused: the client's to fix
                    await self._end(task, exc.code, exc.message, outcome=Status.FAILED)
                    return
                # Our key or the model is not accepted there: an operator's problem, so
                # another route may serve; with none, ERROR (not the client's fault).
                log.error("task %s: %s", task.id, exc.message)
                tried.append(provider.name)
                nxt = await self._reroute(task, tried)
                if nxt is None:
                    await self._end(task, exc.code, exc.message)
                    return
                task, provider = nxt, self._providers[nxt.provider or ""]
                job = replace(job, model=nxt.upstream_model or job.model)
                continue
            except UpstreamUncertain as exc:
                log.warning("task %s: %s", task.id, exc.message)
                try:
                    if await self._reconcile(task, provider, job):
                        return
                except UpstreamError as busy:
                    await self._undecided(task, busy)
                    return
                if self._config.providers[provider.name].resubmit_lost:
                    # The operator accepts a second submission: later, as a new try
                    # (bounded by max_submit_tries), not in a loop under this lease.
                    await self._defer(task, exc.code, None)
                    return
                await self._end(task, "upstream_submit_unknown", _UNKNOWN)
                return
            except UpstreamBusy as exc:
                log.info("task %s: %s not accepting: %s", task.id, provider.name, exc.message)
                tried.append(provider.name)
                advice.append(exc.retry_after)
                nxt = await self._reroute(task, tried)
                if nxt is None:
                    # The next try starts with the first route again: wait until the
                    # soonest provider said it would accept (if every one said).
                    soonest = None if None in advice else min(a or 0.0 for a in advice)
                    await self._defer(task, exc.code, soonest)
                    return
                task, provider = nxt, self._providers[nxt.provider or ""]
                job = replace(job, model=nxt.upstream_model or job.model)
                continue
            await self._record(task, upstream_id, f"accepted by {provider.name}")
            return

    async def _reroute(self, task: Task, tried: list[str]) -> Task | None:
        return await self._store.reroute_submit(
            task.id,
            worker=self._worker,
            now=self._clock(),
            routes=self._config.routes[task.spec.model],
            tried=tried,
            caps=self._config.caps,
        )

    async def _reconcile(self, task: Task, provider: Provider, job: UpstreamJob) -> bool:
        """Find a submission whose answer was lost; record it if found."""
        since = task.submitted_at or task.created_at
        known = await self._store.upstream_ids(provider.name, since=since - 3600)
        found = await provider.find_lost(job, since=since, known=known)
        if found is None:
            return False
        log.info("task %s: found its lost submission %s at %s", task.id, found, provider.name)
        await self._record(task, found, f"lost submission found at {provider.name}")
        return True

    async def _undecided(self, task: Task, exc: UpstreamError) -> None:
        """The provider cannot be asked now: the lease expires and a later claim asks again."""
        if task.attempts >= self._config.watch.max_submit_tries:
            await self._end(task, "upstream_submit_unknown", _UNKNOWN)
            return
        log.warning(
            "task %s: cannot look for its lost submission yet (%s); asking again later",
            task.id,
            exc.message,
        )

    async def _record(self, task: Task, upstream_id: str, detail: str) -> None:
        assert task.provider is not None and task.upstream_model is not None
        expected = await self._expected(task)
        error: Exception | None = None
        for attempt in range(RECORD_TRIES):
            now = self._clock()
            move = Move(
                task.id,
                SUBMITTING,
                Phase.WATCHING,
                now,
                holder=("lease_owner", self._worker),
                fields={
                    "upstream_id": upstream_id,
                    "submitted_at": now,
                    "expected_seconds": expected,
                    "lease_owner": None,
                    "lease_until": None,
                    "watcher": self._worker,
                    "next_check_at": now + self._config.watch.min_interval,
                    "faults": 0,
                },
                detail=detail,
            )
            try:
                accepted = await self._store.move(move)
            except IllegalTransition:
                if not await ended_by_client(self._store, task.id):
                    raise
                # Cancelled while the request was out: the upstream task must not run on.
                provider = self._providers.get(task.provider)
                if provider is not None:
                    await stop_upstream(provider, upstream_id, task.id)
                return
            except Exception as exc:  # the database is away: the lease still holds the task
                error = exc
                await asyncio.sleep(2**attempt)
                continue
            self._on_accepted(accepted)
            return
        log.error(
            "task %s: %s accepted it as %s but that could not be recorded: %s",
            task.id,
            task.provider,
            upstream_id,
            error,
        )

    async def _expected(self, task: Task) -> float:
        assert task.provider is not None and task.upstream_model is not None
        spec = task.spec
        try:
            learned = await self._store.expected_duration(
                task.provider, task.upstream_model, spec.seconds, spec.resolution
            )
        except Exception:
            learned = None
        return learned or default_expected(spec.seconds)

    async def _defer(self, task: Task, code: str, retry_after: float | None) -> None:
        """Back to the queue with backoff; ERROR once the tries are spent."""
        if task.attempts >= self._config.watch.max_submit_tries:
            message = f"no provider accepted the task after {task.attempts} tries; retry later"
            await self._end(task, "upstream_unavailable", message)
            return
        watch = self._config.watch
        delay = backoff(
            task.attempts,
            base=watch.min_interval,
            cap=watch.max_interval * 10,
            retry_after=retry_after,
        )
        now = self._clock()
        await self._store.move(
            Move(
                task.id,
                SUBMITTING,
                Phase.QUEUED,
                now,
                holder=("lease_owner", self._worker),
                fields={
                    "lease_owner": None,
                    "lease_until": None,
                    "provider": None,
                    "upstream_model": None,
                    "next_check_at": now + delay,
                },
                detail=f"not accepted ({code}); next try in {delay:.0f}s",
            )
        )
        log.info("task %s: waiting %.0fs for a provider to accept it", task.id, delay)

    async def _end(
        self, task: Task, code: str, message: str, *, outcome: Status = Status.ERROR
    ) -> None:
        await self._store.move(
            Move(
                task.id,
                SUBMITTING,
                Phase.DONE,
                self._clock(),
                outcome=outcome,
                holder=("lease_owner", self._worker),
                fields={"error_code": code, "error_message": message},
                detail=code,
            )
        )
        metrics.task_finished(task, outcome)
        log.info("task %s %s: %s (%s)", task.id, outcome, code, message)

    async def _job(self, task: Task, provider: Provider) -> UpstreamJob:
        spec = task.spec
        config = self._config.providers[provider.name]
        image = image_type = image_url = None
        if spec.input_key is not None:
            image = await self._blobs.get_bytes(spec.input_key)
            image_type = mimetypes.guess_type(spec.input_key)[0] or "application/octet-stream"
            if config.image_input == "signed_url":
                image_url = self._input_url(spec.input_key)
        callback = None
        if config.callback and self._callback_url is not None:
            callback = self._callback_url(task)
        return UpstreamJob(
            task.id,
            task.upstream_model or spec.model,
            spec.prompt,
            spec.seconds,
            spec.size,
            spec.resolution,
            image=image,
            image_type=image_type,
            image_url=image_url,
            callback_url=callback,
        )


_UNKNOWN = (
    "the request to the provider may or may not have arrived, and the provider cannot "
    "tell; it was not sent again, so that the video is not paid for twice"
)
