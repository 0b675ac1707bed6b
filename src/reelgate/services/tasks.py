"""The task use cases: create, get, and the signed link to a finished video."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from reelgate.domain.catalog import Catalog
from reelgate.domain.errors import TaskNotFound
from reelgate.domain.request import CreateRequest
from reelgate.domain.status import Status
from reelgate.domain.task import Task, TaskSpec, new_task_id
from reelgate.ports import BlobStore, Clock, TaskStore
from reelgate.services.signing import Signer

FILES_PREFIX = "/files/"


def output_key(task_id: str) -> str:
    """Where a task's video lives: one key per task, so a re-render overwrites it."""
    return f"videos/{task_id}.mp4"


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
        wake: Callable[[], None] = lambda: None,
    ) -> None:
        self._store = store
        self._blobs = blobs
        self.catalog = catalog
        self._clock = clock
        self._signer = signer
        self._public_url = public_url
        self._url_ttl = url_ttl
        self._wake = wake

    async def create(
        self, owner: str, request: CreateRequest, image: tuple[bytes, str] | None = None
    ) -> Task:
        """Store a new SUBMITTED task (and its input image), durably, then wake a worker."""
        task_id = new_task_id()
        input_key = None
        if image is not None:
            data, extension = image
            input_key = f"inputs/{task_id}.{extension}"
            await self._blobs.put_bytes(input_key, data)
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
        await self._store.create_task(task)
        self._wake()
        return task

    async def get(self, owner: str, task_id: str) -> Task:
        """The owner's task, or ``TaskNotFound`` (also for another owner's task)."""
        task = await self._store.get_task(task_id)
        if task is None or task.owner != owner:
            raise TaskNotFound()
        return task

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
