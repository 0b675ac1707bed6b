"""The task entity, its events, and API keys."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, replace

from reelgate.domain.status import Status, check_transition

ID_PREFIX = "task_"


def new_task_id() -> str:
    """An unguessable task id: 160 random bits, URL-safe."""
    return ID_PREFIX + secrets.token_urlsafe(20)


@dataclass(frozen=True, slots=True)
class TaskSpec:
    """What the client asked for; never changes after create."""

    model: str
    prompt: str
    seconds: int
    size: str
    resolution: str
    input_key: str | None = None  # blob key of the input image, for image-to-video


@dataclass(frozen=True, slots=True)
class Task:
    """A video task as stored."""

    id: str
    owner: str
    spec: TaskSpec
    status: Status
    progress: int
    created_at: float
    updated_at: float
    completed_at: float | None = None
    attempts: int = 0
    lease_owner: str | None = None
    lease_until: float | None = None
    output_key: str | None = None
    error_code: str | None = None
    error_message: str | None = None

    @property
    def terminal(self) -> bool:
        return self.status.terminal

    def moved(self, status: Status, **changes: object) -> Task:
        """A copy in ``status``, after checking the machine allows the move."""
        check_transition(self.status, status)
        return replace(self, status=status, **changes)  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class Event:
    """One recorded status change (or progress step) of a task."""

    task_id: str
    seq: int
    at: float
    status: Status
    progress: int
    detail: str | None = None


@dataclass(frozen=True, slots=True)
class ApiKey:
    """A bearer key as stored: only its hash, never the key itself."""

    id: str
    owner: str
    name: str
    key_hash: str
    prefix: str
    created_at: float
    revoked_at: float | None = None

    @property
    def active(self) -> bool:
        return self.revoked_at is None
