"""The task entity, its events, and API keys."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field, replace

from reelgate.domain.progress import estimate
from reelgate.domain.quotas import Limits, Role
from reelgate.domain.status import CANCELLED, Phase, Status, check_move, check_transition

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
    phase: Phase = Phase.QUEUED
    # remote backends (providers) only:
    provider: str | None = None  # the configured provider that has (or gets) the task
    upstream_model: str | None = None  # the model id at that provider
    upstream_id: str | None = None  # the provider's task id, once it accepted the task
    next_check_at: float | None = None  # queued: not before; watching: the next poll
    watcher: str | None = None  # the poller process that watches the task
    submitted_at: float | None = None  # when the provider accepted the task
    expected_seconds: float | None = None  # the learned run time, for progress
    upstream_url: str | None = None  # the provider's video URL, exactly as returned
    upstream_url_expires: float | None = None
    usage_tokens: int | None = None  # as the provider reported them
    faults: int = 0  # transient faults in a row (submit, poll or download)
    # retention (domain.retention): sizes recorded as the files were stored, and when
    # the janitor deleted the outputs (videos, thumbnails) and the input image
    output_bytes: int | None = None
    input_bytes: int | None = None
    files_expired_at: float | None = None
    input_expired_at: float | None = None

    @property
    def terminal(self) -> bool:
        return self.status.terminal

    @property
    def cancelled(self) -> bool:
        """Whether the task ended by a cancel (FAILED, error code ``cancelled``)."""
        return self.phase is Phase.DONE and self.error_code == CANCELLED

    def shown_progress(self, now: float) -> int:
        """The progress a client sees: stored, or estimated for an upstream that reports none.

        Monotone as time passes (the expected time is fixed at submit), and at most 99
        until SUCCESS.
        """
        if self.phase is Phase.REHOSTING:
            return max(self.progress, 97)
        if self.phase is Phase.WATCHING and self.submitted_at and self.expected_seconds:
            guess = estimate(now - self.submitted_at, self.expected_seconds)
            return max(self.progress, guess)
        return self.progress

    def moved(self, status: Status, **changes: object) -> Task:
        """A copy in ``status``, after checking the machine allows the move."""
        check_transition(self.status, status)
        return replace(self, status=status, **changes)  # type: ignore[arg-type]

    def moved_to(self, phase: Phase, outcome: Status | None = None, **changes: object) -> Task:
        """A copy in ``phase`` (and its wire status), after checking the machine allows it."""
        status = check_move(self.phase, phase, outcome)
        return replace(self, phase=phase, status=status, **changes)  # type: ignore[arg-type]


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
    role: Role = Role.USER
    limits: Limits = field(default_factory=Limits)

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    @property
    def admin(self) -> bool:
        return self.role is Role.ADMIN
