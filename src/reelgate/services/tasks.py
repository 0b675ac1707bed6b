"""The task use cases: create, get, and the signed link to a finished video."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from reelgate.domain.catalog import Catalog
from reelgate.domain.errors import TaskNotFound
from reelgate.domain.request import check_task_id, parse_create
from reelgate.domain.status import Status
from reelgate.domain.task import Task, TaskSpec, new_task_id
from reelgate.ports import BlobStore, Clock, TaskStore
from reelgate.services.images import verify_image
from reelgate.services.signing import Signer

FILES_PREFIX = "/files/"
CALLBACKS_PREFIX = "/v1/callbacks/"
CALLBACK_TTL = 3 * 24 * 3600  # a provider may call back days after the submission


def output_key(task_id: str, attempt: int = 1) -> str:
    """Where an attempt of a task puts its video.

    One key per attempt: a worker that lost its lease unnoticed can never replace the
    video that another attempt recorded. Only the key the task records is served.
    """
    return f"videos/{task_id}.{attempt}.mp4"


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
    ) -> None:
        self._store = store
        self._blobs = blobs
        self.catalog = catalog
        self._clock = clock
        self._signer = signer
        self._public_url = public_url
        self._url_ttl = url_ttl
        self._max_image_bytes = max_image_bytes
        self._wake = wake

    async def create(
        self, owner: str, fields: Mapping[str, object], image: bytes | None = None
    ) -> Task:
        """Validate a create request; store the task (and its image) durably; wake a worker.

        Nothing is stored for a refused request: the image is written only once every
        check passed, and removed again when the task itself could not be stored.
        """
        request = parse_create(fields, has_image=image is not None, catalog=self.catalog)
        task_id = new_task_id()
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
        if image is None or input_key is None:
            await self._store.create_task(task)
        else:
            await self._blobs.put_bytes(input_key, image)
            try:
                await self._store.create_task(task)
            except BaseException:  # an error, or the request cancelled: no orphan image
                with contextlib.suppress(Exception):
                    await asyncio.shield(self._blobs.delete(input_key))
                raise
        self._wake()
        return task

    async def get(self, owner: str, task_id: str) -> Task:
        """The owner's task, or ``TaskNotFound`` (also for another owner's task)."""
        task = await self._store.get_task(check_task_id(task_id))
        if task is None or task.owner != owner:
            raise TaskNotFound()
        return task

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
        """A freshly signed link to the task's video, or None before SUCCESS."""
        if task.status is not Status.SUCCESS or task.output_key is None:
            return None
        expires = int(self._clock()) + self._url_ttl
        presigned = self._blobs.presigned_url(task.output_key, expires_in=self._url_ttl)
        if presigned is not None:
            return Link(presigned, expires)
        path = FILES_PREFIX + task.output_key
        return Link(self._signer.sign(self._public_url, path, expires), expires)
