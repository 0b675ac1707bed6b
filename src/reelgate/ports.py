"""The I/O edges of reelgate, one Protocol each.

Services and the worker talk to these only; the adapters in ``store``,
``blobs`` and ``renderers`` implement them, and ``reelgate.wiring`` picks the
adapters from settings.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Protocol

from reelgate.domain.errors import IllegalTransition
from reelgate.domain.listing import Cursor, ListQuery, Page
from reelgate.domain.quotas import Limits, UsageLine
from reelgate.domain.retention import FileKind, StorageUsage
from reelgate.domain.status import Phase, Status, check_move
from reelgate.domain.task import ApiKey, Event, Task
from reelgate.domain.webhooks import Attempt, Delivery, Endpoint, IdempotencyRecord


@dataclass(frozen=True, slots=True)
class Move:
    """One conditional change of a task: from any phase of ``source`` to ``target``.

    ``holder`` (``("lease_owner" | "watcher", id)``) must hold the task; ``fields`` are
    the columns set with it (``progress`` only ever rises). ``detail`` is recorded
    with the event when ``record``. A store applies a move in one conditional
    statement and raises ``IllegalTransition`` when it matched nothing.
    """

    task_id: str
    source: frozenset[Phase]
    target: Phase
    now: float
    outcome: Status | None = None
    holder: tuple[str, str] | None = None
    fields: Mapping[str, object] = field(default_factory=dict)
    detail: str | None = None
    record: bool = True

    def status(self) -> Status:
        """The wire status after the move; raises ``IllegalTransition`` if not allowed."""
        shown = {check_move(source, self.target, self.outcome) for source in self.source}
        if len(shown) != 1:
            raise IllegalTransition(f"a move must name at least one phase, got {self.source}")
        return shown.pop()


@dataclass(frozen=True, slots=True)
class Claimed:
    """A task taken for submission; ``lost`` when an earlier submitter died mid-request."""

    task: Task
    lost: bool


class TaskStore(Protocol):
    """Durable tasks, their events, and their leases.

    Every status change is one conditional statement naming the expected state;
    when it matches no row the adapter raises (``IllegalTransition``,
    ``LeaseLost``), it never succeeds silently.
    """

    async def migrate(self) -> None:
        """Bring the schema to the newest version."""

    async def ping(self) -> None:
        """Raise ``Unavailable`` if the database does not answer."""

    async def check_writes(self, *, min_free_bytes: int = 0) -> None:
        """Raise ``Unavailable`` unless the database can take writes now.

        A database in a local file: its folder takes a small write and has at least
        ``min_free_bytes`` free. A server: it is not read-only (a replica, recovery).
        """

    async def close(self) -> None: ...

    async def create_task(self, task: Task, limits: Limits | None = None) -> None:
        """Insert a new SUBMITTED task and its first event, durably.

        Under ``limits`` (not unlimited), in the same transaction: count the create
        against them (serialised per owner, across processes) or raise ``RateLimited``
        and store nothing.
        """

    async def get_task(self, task_id: str) -> Task | None: ...

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
        """Atomically take up to ``limit`` claimable tasks, oldest first, leased to ``worker``.

        Claimable: SUBMITTED, or IN_PROGRESS whose lease expired before ``now``
        and that has been attempted fewer than ``max_attempts`` times. Each
        becomes IN_PROGRESS with ``attempts`` one higher.
        """

    async def heartbeat(
        self, task_id: str, *, worker: str, now: float, lease_seconds: float, progress: int
    ) -> Task:
        """Extend ``worker``'s lease and raise progress (never lower it).

        Raises ``LeaseLost`` when ``worker`` no longer holds the lease.
        """

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
        """Move a leased task to a terminal status; raises ``LeaseLost``."""

    async def release_task(self, task_id: str, *, worker: str, now: float) -> Task:
        """Hand a leased task back, claimable at once; the attempt does not count.

        The task stays IN_PROGRESS with its progress. Raises ``LeaseLost``.
        """

    async def expire_tasks(self, *, now: float, max_attempts: int) -> list[Task]:
        """End in ERROR every IN_PROGRESS task whose lease expired after its last attempt."""

    async def list_events(self, task_id: str) -> list[Event]: ...

    async def events_after(self, task_id: str, after: int, *, limit: int = 100) -> list[Event]:
        """Up to ``limit`` of the task's events with ``seq`` above ``after``, oldest first.

        ``seq`` is the cursor of streams: it rises with every event of a task, in the
        order the task's changes were committed. A heartbeat whose progress crosses a
        multiple of ``sql.PROGRESS_STEP`` records a ``progress`` event.
        """

    async def event_feed(self, after: int, *, limit: int = 1000) -> list[tuple[int, str]]:
        """``(seq, task_id)`` of every task's events with ``seq`` above ``after``, in order.

        Complete where writes are serialised (memory, SQLite); on PostgreSQL an event
        committed late may carry a lower ``seq`` than one already read (use NOTIFY there).
        """

    async def last_event(self) -> int:
        """The highest ``seq`` recorded so far (0 before any)."""

    async def queue_depth(self) -> dict[Phase, int]:
        """How many tasks are in each phase but DONE now (metrics read it at scrape time)."""

    async def list_tasks(self, owner: str, query: ListQuery, cursor: Cursor | None = None) -> Page:
        """One page of ``owner``'s tasks that pass ``query``'s filters, in its order.

        ``cursor`` is the (created_at, id) of the task the page starts after. Index-backed
        keyset pagination: a deep page costs what the first does.
        """

    # remote tasks ------------------------------------------------------------

    async def move(self, move: Move) -> Task:
        """Apply ``move``; ``IllegalTransition`` when the task is not as it names."""

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
        """Take up to ``limit`` tasks to submit, recording the intent before any request.

        Queued tasks of a model in ``routes`` (public id -> ordered (provider, upstream
        model)) that are due get the first route whose provider has fewer than its cap
        of tasks in flight; tasks whose providers are all full stay queued (admission
        control). Submissions whose lease expired come back as ``lost``. All in one
        transaction, serialised with other submitters, so caps hold across processes.
        """

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
        """Record the next route (not in ``tried``, with room) as the task's intent.

        None when there is none; the task is then unchanged.
        """

    async def claim_watch(self, *, poller: str, now: float, limit: int) -> list[Task]:
        """Take over up to ``limit`` watched tasks that no live poller holds."""

    async def beat_poller(self, poller: str, *, now: float, alive_until: float) -> None:
        """Say that ``poller`` is alive (and holds its tasks) until ``alive_until``."""

    async def list_pollers(self) -> list[tuple[str, float]]:
        """Every poller's id and the time it beat to be alive until (the health page)."""

    async def drop_poller(self, poller: str, *, now: float) -> None:
        """Hand ``poller``'s tasks back and forget it (and pollers long dead)."""

    async def upstream_ids(self, provider: str, *, since: float) -> set[str]:
        """Upstream ids recorded for ``provider`` by tasks submitted since ``since``."""

    async def expected_duration(
        self, provider: str, model: str, seconds: int, resolution: str
    ) -> float | None:
        """The learned run time of such a task at ``provider``, or None before any."""

    async def learn_duration(
        self, provider: str, model: str, seconds: int, resolution: str, took: float
    ) -> None:
        """Fold one finished run into the learned run time."""

    # cancel and delete ---------------------------------------------------------

    async def cancel_task(self, task_id: str, *, now: float) -> Task:
        """Cancel a task in any phase but DONE, in one conditional statement.

        The task ends FAILED with error code ``cancelled`` (an event records it), and the
        cancellation is logged for ``cancelled_since``. ``IllegalTransition`` when the
        task is finished or unknown.
        """

    async def cancelled_since(self, since: float) -> list[str]:
        """The ids of tasks cancelled at or after ``since`` (logged for a day), in order."""

    async def delete_task(self, task_id: str) -> bool:
        """Delete the task's row and its events; False when there was none."""

    # retention -----------------------------------------------------------------

    async def storage_usage(self) -> StorageUsage:
        """The files kept now (videos with their thumbnails, input images) and their bytes.

        Summed from the sizes recorded as the files were stored, by index-only scans of
        the tasks whose files are kept (``tasks_outputs_kept``, ``tasks_inputs_kept``).
        """

    async def take_lease(self, name: str, holder: str, *, now: float, until: float) -> bool:
        """Hold the lease ``name`` until ``until`` when it is free, expired or ``holder``'s.

        One conditional statement: of several processes asking at once, one gets it.
        """

    async def drop_lease(self, name: str, holder: str) -> None:
        """Free the lease ``name`` if ``holder`` holds it."""

    async def expire_files(
        self, kind: FileKind, *, before: float, now: float, limit: int, holder: str
    ) -> list[Task]:
        """Mark up to ``limit`` finished tasks' ``kind`` files expired at ``now``; those tasks.

        Only tasks in phase DONE, completed before ``before``, whose ``kind`` files are
        not yet marked, oldest first; and only while ``holder`` holds the lease
        ``retention`` (none when it lost it). One conditional statement: a task is
        marked once, by one caller. The caller deletes the files afterwards.
        """

    async def restore_files(self, kind: FileKind, task_ids: Collection[str]) -> None:
        """Unmark tasks whose ``kind`` files could not be deleted (a later run retries)."""

    async def expirable(self, kind: FileKind, *, before: float) -> tuple[int, int]:
        """How many tasks ``expire_files`` would mark (with no limit), and their bytes."""

    async def add_key(self, key: ApiKey) -> None: ...

    async def key_by_hash(self, key_hash: str) -> ApiKey | None: ...

    async def list_keys(self) -> list[ApiKey]: ...

    async def revoke_key(self, key_id: str, *, now: float) -> ApiKey:
        """Mark a key revoked; raises ``NotFound`` for an unknown id."""


class BlobStore(Protocol):
    """Where input images and output videos live."""

    async def put_file(self, key: str, path: Path) -> None:
        """Store the file at ``path`` under ``key`` atomically (the file is consumed)."""

    async def put_bytes(self, key: str, data: bytes) -> None: ...

    async def get_bytes(self, key: str) -> bytes:
        """Raise ``NotFound`` for a missing key."""

    async def exists(self, key: str) -> bool: ...

    async def delete(self, key: str) -> None: ...

    async def ping(self) -> None:
        """Raise ``Unavailable`` if the storage does not answer."""

    def presigned_url(self, key: str, *, expires_in: int) -> str | None:
        """A direct download URL, or None when the API serves the file itself."""

    def local_path(self, key: str) -> Path | None:
        """The file's path when blobs are local files, else None."""

    async def close(self) -> None: ...


ProgressFn = Callable[[int], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class RenderJob:
    """Everything a renderer needs to make one video."""

    task_id: str
    model: str
    prompt: str
    seconds: int
    width: int
    height: int
    fps: int
    image: bytes | None = None  # the input_reference file, for image-to-video


class Renderer(Protocol):
    """Makes one MP4 for a job; reports progress 0..100 while it works.

    Raises ``RenderRejected`` when the input is refused (the task ends FAILED)
    and ``RenderError`` for an internal failure (the task ends ERROR).
    """

    name: str

    async def render(self, job: RenderJob, out_path: Path, progress: ProgressFn) -> None: ...

    async def close(self) -> None: ...


class UpstreamState(StrEnum):
    """An upstream task's state, in our words (each adapter maps its provider's)."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    EXPIRED = "expired"


@dataclass(frozen=True, slots=True)
class UpstreamJob:
    """What a provider is asked to make: our request, with the provider's model id."""

    task_id: str
    model: str  # the model id at the provider
    prompt: str
    seconds: int
    size: str  # an aspect ratio of the catalog, e.g. "16:9"
    resolution: str  # "480p", "720p" or "1080p"
    image: bytes | None = None  # the input_reference file, for image-to-video
    image_type: str | None = None  # its media type, e.g. "image/png"
    image_url: str | None = None  # a signed URL of ours to the same image, if configured
    callback_url: str | None = None  # where the provider may tell us of a change (a hint)


@dataclass(frozen=True, slots=True)
class UpstreamTask:
    """What a provider says of a task it has."""

    state: UpstreamState
    progress: int | None = None  # 0..100 where the provider reports it
    video_url: str | None = None  # exactly as returned (never re-encoded)
    video_expires_at: float | None = None  # Unix seconds, where known
    error_code: str | None = None  # our stable code, for FAILED
    error_message: str | None = None  # safe to show to a client
    usage_tokens: int | None = None


class Provider(Protocol):
    """One configured upstream (Ark, CometAPI, an OpenAI-style server).

    Every method converts its failures into the domain tree: ``UpstreamRefused``
    (the task is refused for good), ``UpstreamBusy`` (not accepted now; safe to retry
    or fall back), ``UpstreamUncertain`` (sent, no answer: the provider may have it),
    ``UpstreamGone`` (the task or its video no longer exists). No httpx error escapes.
    """

    name: str  # the provider's name in the configuration
    kind: str  # "ark", "cometapi" or "openai"

    async def submit(self, job: UpstreamJob) -> str:
        """Create the upstream task; return the provider's task id."""

    async def get(self, upstream_id: str) -> UpstreamTask:
        """The upstream task's state now."""

    async def download(
        self, upstream_id: str, task: UpstreamTask, dest: Path, max_bytes: int
    ) -> None:
        """Stream the finished video into ``dest`` (never whole in memory).

        Raises ``UpstreamRefused`` (code ``upstream_video_too_large``) past ``max_bytes``.
        """

    async def cancel(self, upstream_id: str) -> None:
        """Ask the provider to stop (and forget) the task."""

    async def find_lost(
        self, job: UpstreamJob, *, since: float, known: Collection[str]
    ) -> str | None:
        """The id of a submission of ``job`` made at or after ``since`` whose answer was lost.

        Only an unambiguous match counts; ids in ``known`` belong to other tasks. None
        when nothing (or more than one candidate) is found, or the provider cannot list.
        """

    async def close(self) -> None: ...


class Listener(Protocol):
    """Tells workers in other processes that a task became claimable."""

    async def run(self, wake: Callable[[], None]) -> None:
        """Call ``wake`` on every notification, until cancelled."""


class EventListener(Protocol):
    """Tells a process which tasks got new events, as other processes record them."""

    async def run(self, changed: Callable[[str | None], None]) -> None:
        """Call ``changed(task_id)`` per recorded event, and ``changed(None)`` (any task
        may have changed) whenever notifications may have been missed; until cancelled."""


class Clock(Protocol):
    """Wall-clock time in Unix seconds (a float)."""

    def __call__(self) -> float: ...


class HookStore(Protocol):
    """Idempotency keys and webhooks: endpoints, callback URLs and the delivery outbox.

    The SQL stores and the memory store implement it beside ``TaskStore``. The outbox
    is filled by the store itself, in the transaction that records a task's terminal
    event (a trigger in SQL), one delivery per endpoint of the owner and per callback.
    """

    async def reserve_key(
        self, record: IdempotencyRecord, *, now: float
    ) -> IdempotencyRecord | None:
        """Take ``record``'s (owner, key) (an expired holder is dropped first).

        None when taken; else the live record that holds the key (one insert wins under
        any concurrency: the primary key decides).
        """

    async def release_key(self, owner: str, key: str, task_id: str) -> None:
        """Free a key taken for ``task_id`` (its create failed)."""

    async def purge_keys(self, *, now: float) -> int:
        """Delete expired keys; how many."""

    async def add_callback(self, task_id: str, url: str) -> None:
        """Record the callback URL of a task (before the task itself is stored)."""

    async def drop_callback(self, task_id: str) -> None: ...

    async def add_endpoint(self, endpoint: Endpoint) -> None: ...

    async def list_endpoints(self, owner: str) -> list[Endpoint]:
        """The owner's endpoints, oldest first."""

    async def delete_endpoint(self, owner: str, endpoint_id: str) -> bool:
        """Delete the owner's endpoint; False when there is none of that id."""

    async def claim_deliveries(
        self, *, now: float, lease_seconds: float, limit: int
    ) -> list[tuple[Delivery, str | None]]:
        """Take up to ``limit`` due deliveries (SKIP LOCKED on PostgreSQL), each with its
        endpoint's secret (None for a callback or a deleted endpoint).

        A claimed delivery's ``next_at`` is ``now + lease_seconds``: due again then,
        unless ``record_attempt`` names it first.
        """

    async def record_attempt(self, delivery: Delivery, attempt: Attempt) -> bool:
        """Record an attempt of a claimed ``delivery``; False when its claim was lost."""

    async def list_deliveries(
        self, owner: str, *, task_id: str | None = None, limit: int = 100
    ) -> list[Delivery]:
        """The owner's deliveries (of one task, if named), newest first."""


class QuotaStore(Protocol):
    """Keys' roles and limits, and usage (the SQL stores and the memory store).

    Usage is written by the store itself when a task ends SUCCESS (a trigger in SQL),
    per UTC day of completion, owner and model; deleting a task keeps its usage.
    """

    async def key_by_id(self, key_id: str) -> ApiKey | None: ...

    async def update_key(self, key: ApiKey) -> ApiKey:
        """Store ``key``'s name, role and limits; ``NotFound`` for an unknown id."""

    async def usage(
        self, start_day: int, end_day: int, *, owner: str | None = None, model: str | None = None
    ) -> list[UsageLine]:
        """Per owner and model, the SUCCESS tasks completed on UTC days
        ``start_day..end_day`` (day numbers, both included), ordered by owner and model."""
