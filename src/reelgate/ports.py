"""The I/O edges of reelgate, one Protocol each.

Services and the worker talk to these only; the adapters in ``store``,
``blobs`` and ``renderers`` implement them, and ``reelgate.wiring`` picks the
adapters from settings.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from reelgate.domain.status import Status
from reelgate.domain.task import ApiKey, Event, Task


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

    async def close(self) -> None: ...

    async def create_task(self, task: Task) -> None:
        """Insert a new SUBMITTED task and its first event, durably."""

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
    ) -> Task:
        """Move a leased task to a terminal status; raises ``LeaseLost``."""

    async def release_task(self, task_id: str, *, worker: str, now: float) -> Task:
        """Hand a leased task back, claimable at once; the attempt does not count.

        The task stays IN_PROGRESS with its progress. Raises ``LeaseLost``.
        """

    async def expire_tasks(self, *, now: float, max_attempts: int) -> list[Task]:
        """End in ERROR every IN_PROGRESS task whose lease expired after its last attempt."""

    async def list_events(self, task_id: str) -> list[Event]: ...

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


class Listener(Protocol):
    """Tells workers in other processes that a task became claimable."""

    async def run(self, wake: Callable[[], None]) -> None:
        """Call ``wake`` on every notification, until cancelled."""


class Clock(Protocol):
    """Wall-clock time in Unix seconds (a float)."""

    def __call__(self) -> float: ...
