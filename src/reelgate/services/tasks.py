"""The task use cases: create, get, and the signed link to a finished video."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace

from reelgate import metrics
from reelgate.domain.catalog import Catalog
from reelgate.domain.errors import (
    ContentNotReady,
    FilesExpired,
    InvalidParameter,
    NotFound,
    TaskNotCancellable,
    TaskNotFound,
)
from reelgate.domain.listing import ListQuery, Page
from reelgate.domain.quotas import Limits
from reelgate.domain.request import CreateRequest, check_task_id, parse_create
from reelgate.domain.status import Status
from reelgate.domain.task import Task, TaskSpec, new_task_id
from reelgate.ports import BlobStore, Clock, TaskStore
from reelgate.services import lifecycle
from reelgate.services.images import verify_image
from reelgate.services.signing import Signer

FILES_PREFIX = "/files/"
CALLBACKS_PREFIX = "/v1/callbacks/"
LINK_STEP = 10  # seconds: a video URL's expiry is rounded up to a multiple of it
LINKS_KEPT = 20_000  # URLs kept per step, at most (about 4 MB)
CALLBACK_TTL = 3 * 24 * 3600  # a provider may call back days after the submission


def output_key(task_id: str, attempt: int = 1) -> str:
    """Where an attempt of a task puts its video.

    One key per attempt: a worker that lost its lease unnoticed can never replace the
    video that another attempt recorded. Only the key the task records is served.
    """
    return f"videos/{task_id}.{attempt}.mp4"


def thumbnail_key(task_id: str, attempt: int = 1) -> str:
    """Where an attempt of a task puts the JPEG of its video's middle frame.

    Stored before the video itself, so that a stored video always has its thumbnail.
    """
    return f"thumbnails/{task_id}.{attempt}.jpg"


def attempt_of(key: str) -> int:
    """The attempt an ``output_key`` names (``videos/<id>.<attempt>.mp4``); 1 if none."""
    stem = key.rsplit("/", 1)[-1].removesuffix(".mp4")
    attempt = stem.rsplit(".", 1)[-1] if "." in stem else ""
    return int(attempt) if attempt.isdigit() else 1


VARIANTS = ("video", "thumbnail")


@dataclass(frozen=True, slots=True)
class Link:
    """A signed download link and its expiry (Unix seconds)."""

    url: str
    expires_at: int


class TaskService:
    """Create and read tasks for an owner; sign links to their videos."""

    def __init__(
        self,
        store: TaskStore,
        blobs: BlobStore,
        catalog: Catalog,
        clock: Clock,
        signer: Signer,
        *,
        public_url: str,
        url_ttl: int,
        max_image_bytes: int = 10 * 1024 * 1024,
        wake: Callable[[], None] = lambda: None,
        on_cancel: Callable[[str], object] = lambda _: None,
        retain_outputs: float | None = None,
        max_queued: int | None = None,
    ) -> None:
        self._store = store
        self._blobs = blobs
        self.catalog = catalog
        self._clock = clock
        self._signer = signer
        self._public_url = public_url
        self._url_ttl = url_ttl
        self._links: dict[str, str] = {}  # output key -> its URL of this step
        self._links_expire = 0
        self._max_image_bytes = max_image_bytes
        self._wake = wake
        self._on_cancel = on_cancel  # tells this process's workers at once
        self.retain_outputs = retain_outputs  # seconds a finished video is kept (None: ever)
        self._max_queued = max_queued  # unfinished tasks of all owners, at most (None: any)

    async def create(
        self,
        owner: str,
        fields: Mapping[str, object],
        image: bytes | None = None,
        *,
        task_id: str | None = None,
        limits: Limits | None = None,
    ) -> Task:
        """Validate a create request; store the task (and its image) durably; wake a worker.

        Nothing is stored for a refused request: the image is written only once every
        check passed, and removed again when the task itself could not be stored.
        ``task_id`` is the id to give the task (default: a new one; see
        ``services.idempotency``, which records it before the task). ``limits`` are the
        signed-in key's (``RateLimited`` past one of them, or past the queue cap).
        """
        request = parse_create(fields, has_image=image is not None, catalog=self.catalog)
        return await self.add(owner, request, image, task_id=task_id, limits=limits)

    async def add(
        self,
        owner: str,
        request: CreateRequest,
        image: bytes | None = None,
        *,
        task_id: str | None = None,
        limits: Limits | None = None,
    ) -> Task:
        """``create`` for a request already parsed (``parse_create``).

        Every create path ends here: the limits are applied by the store, in the
        transaction that inserts the task.
        """
        task_id = task_id or new_task_id()
        if self._max_queued is not None:
            limits = replace(limits or Limits(), max_queued=self._max_queued)
        # Without limits: the create of before, to the statement (one round trip).
        limited = () if limits is None or limits.unlimited else (limits,)
        input_key = None
        if image is not None:
            extension = await verify_image(image, self._max_image_bytes)
            input_key = f"inputs/{task_id}.{extension}"
        now = self._clock()
        spec = TaskSpec(
            request.model,
            request.prompt,
            request.seconds,
            request.size,
            request.resolution,
            input_key,
        )
        task = Task(task_id, owner, spec, Status.SUBMITTED, 0, now, now)
        if image is not None:
            task = replace(task, input_bytes=len(image))
        if image is None or input_key is None:
            await self._store.create_task(task, *limited)
        else:
            await self._blobs.put_bytes(input_key, image)
            try:
                await self._store.create_task(task, *limited)
            except BaseException:  # an error, or the request cancelled: no orphan image
                with contextlib.suppress(Exception):
                    await asyncio.shield(self._blobs.delete(input_key))
                raise
        metrics.task_created(task)
        self._wake()
        return task

    async def get(self, owner: str, task_id: str) -> Task:
        """The owner's task, or ``TaskNotFound`` (also for another owner's task)."""
        task = await self._store.get_task(check_task_id(task_id))
        if task is None or task.owner != owner:
            raise TaskNotFound()
        return task

    async def list(self, owner: str, query: ListQuery) -> Page:
        """One page of the owner's tasks (``query.after``: the last task of the page before).

        An ``after`` that names no task of the owner's is ``InvalidParameter`` (``after``).
        """
        cursor = None
        if query.after is not None:
            try:
                start = await self.get(owner, query.after)
            except TaskNotFound:
                raise InvalidParameter(
                    f"after: no task {query.after[:80]!r} of yours to list from", param="after"
                ) from None
            cursor = (start.created_at, start.id)
        return await self._store.list_tasks(owner, query, cursor)

    async def content(self, owner: str, task_id: str, variant: str = "video") -> str:
        """The blob key of the owner's finished task's ``variant``: its MP4 or thumbnail JPEG.

        ``TaskNotFound`` for an unknown id, ``InvalidParameter`` (``variant``) for a
        variant not offered, ``ContentNotReady`` before SUCCESS, ``FilesExpired`` once
        retention deleted it, ``NotFound`` when the file is no longer stored otherwise.
        """
        if variant not in VARIANTS:
            offered = "; a spritesheet is not offered" if variant == "spritesheet" else ""
            raise InvalidParameter(
                f"variant must be video or thumbnail, got {variant[:40]!r}{offered}",
                param="variant",
            )
        task = await self.get(owner, task_id)
        if task.status is not Status.SUCCESS or task.output_key is None:
            raise ContentNotReady(
                f"the task is {task.status.value}: its {variant} exists once it is SUCCESS"
            )
        if task.files_expired_at is not None:
            raise FilesExpired(
                f"this task's {variant} was deleted after the retention period "
                f"(at {int(task.files_expired_at)}); the task itself is kept"
            )
        key = task.output_key
        if variant == "thumbnail":
            key = thumbnail_key(task.id, attempt_of(task.output_key))
        if not await self._blobs.exists(key):
            raise NotFound(f"this task's {variant} is no longer stored")
        return key

    async def cancel(self, owner: str, task_id: str) -> Task:
        """Cancel the owner's task; the task afterwards (FAILED, error code ``cancelled``).

        ``TaskNotFound`` for an unknown id, ``TaskNotCancellable`` for a finished task (a
        task already cancelled is answered as it is). The work under way stops in the
        worker that holds the task (``reelgate.worker.cancels``).
        """
        task = await self.get(owner, task_id)
        cancelled = await lifecycle.cancel(self._store, self._clock, task)
        if not task.terminal:
            self._on_cancel(task.id)
        return cancelled

    async def delete(self, owner: str, task_id: str) -> None:
        """Cancel the owner's task if it still runs, delete its files, then its rows.

        Afterwards the id is unknown (``TaskNotFound``), as it is for another owner's.
        """
        task = await self.get(owner, task_id)
        if not task.terminal:
            with contextlib.suppress(TaskNotCancellable):  # it finished meanwhile
                task = await lifecycle.cancel(self._store, self._clock, task)
            self._on_cancel(task.id)
        keys = lifecycle.stored_keys(task, output_key, thumbnail_key)
        await lifecycle.delete(self._store, self._blobs, task, keys)

    def now(self) -> float:
        return self._clock()

    def blob_url(self, key: str) -> str:
        """A signed URL to any stored blob (an input image handed to a provider)."""
        expires = int(self._clock()) + self._url_ttl
        presigned = self._blobs.presigned_url(key, expires_in=self._url_ttl)
        if presigned is not None:
            return presigned
        return self._signer.sign(self._public_url, FILES_PREFIX + key, expires)

    def callback_url(self, task_id: str) -> str:
        """The signed URL a provider calls when ``task_id`` changes there."""
        expires = int(self._clock()) + CALLBACK_TTL
        return self._signer.sign(self._public_url, CALLBACKS_PREFIX + task_id, expires)

    def link(self, task: Task) -> Link | None:
        """A signed link to the task's video, or None before SUCCESS.

        Its expiry is ``url_ttl`` from now rounded up to ``LINK_STEP`` seconds, so that
        the reads of one step get the same URL (a browser or cache reuses it), signed
        once per step and kept for the step (polls read the same tasks again and again).
        """
        key = task.output_key
        if task.status is not Status.SUCCESS or key is None or task.files_expired_at is not None:
            return None
        now = int(self._clock())
        expires = -(-(now + self._url_ttl) // LINK_STEP) * LINK_STEP
        if expires != self._links_expire:
            self._links.clear()
            self._links_expire = expires
        url = self._links.get(key)
        if url is None:
            url = self._blobs.presigned_url(key, expires_in=expires - now)
            if url is None:
                url = self._signer.sign(self._public_url, FILES_PREFIX + key, expires)
            if len(self._links) < LINKS_KEPT:
                self._links[key] = url
        return Link(url, expires)
