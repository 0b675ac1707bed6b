"""Response models: lenient, so that a new field or status never breaks a client.

The contract's statuses are upper case (``SUBMITTED``, ``IN_PROGRESS``,
``SUCCESS``, ``FAILED``, ``ERROR``); some CometAPI pages and OpenAI's Videos API
show lower-case ones (``queued``, ``in_progress``, ``completed``, ``failed``,
``error``), and upstream Seedance says ``running``, ``succeeded``,
``cancelled`` and ``expired``. :func:`normalize_status` folds them all onto the
contract's five; a status nobody knows is kept as sent and counts as not
terminal, so that a waiting client keeps polling until its timeout.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, WrapValidator, field_validator
from pydantic_core.core_schema import ValidatorFunctionWrapHandler

__all__ = [
    "TERMINAL_STATUSES",
    "Video",
    "VideoError",
    "VideoStatus",
    "is_failure",
    "is_terminal",
    "normalize_status",
]

VideoStatus = Literal[
    "SUBMITTED",
    "IN_PROGRESS",
    "SUCCESS",
    "FAILED",
    "ERROR",
    "queued",
    "in_progress",
    "completed",
    "failed",
    "error",
]
"""The statuses the client knows; the first five are the contract's."""

_CANONICAL: dict[str, str] = {
    "submitted": "SUBMITTED",
    "queued": "SUBMITTED",
    "pending": "SUBMITTED",
    "in_progress": "IN_PROGRESS",
    "running": "IN_PROGRESS",
    "processing": "IN_PROGRESS",
    "success": "SUCCESS",
    "completed": "SUCCESS",
    "succeeded": "SUCCESS",
    "failed": "FAILED",
    "failure": "FAILED",
    "cancelled": "FAILED",
    "canceled": "FAILED",
    "expired": "FAILED",
    "error": "ERROR",
}

TERMINAL_STATUSES = frozenset({"SUCCESS", "FAILED", "ERROR"})
"""The contract's terminal statuses, after :func:`normalize_status`."""


def normalize_status(status: str) -> str:
    """Fold any spelling of a status onto the contract's (``completed`` -> ``SUCCESS``).

    An unknown status comes back upper-cased, unchanged otherwise.
    """
    return _CANONICAL.get(status.strip().lower(), status.strip().upper())


def _status_of(status_or_video: str | Video) -> str:
    if isinstance(status_or_video, Video):
        return status_or_video.normalized_status
    return normalize_status(status_or_video)


def is_terminal(status_or_video: str | Video) -> bool:
    """Whether the task will not move again (SUCCESS, FAILED or ERROR, any spelling)."""
    return _status_of(status_or_video) in TERMINAL_STATUSES


def is_failure(status_or_video: str | Video) -> bool:
    """Whether the task ended without a video (FAILED or ERROR, any spelling)."""
    return _status_of(status_or_video) in {"FAILED", "ERROR"}


def _keep_unknown_status(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
    # Open set on the client: a status outside the Literal is kept, not refused.
    try:
        return handler(value)
    except ValueError:
        if isinstance(value, str):
            return value
        raise


class VideoError(BaseModel):
    """Why a task ended FAILED or ERROR: ``{code, message}``, extra fields kept."""

    model_config = ConfigDict(extra="allow")

    code: str | None = None
    message: str | None = None


class Video(BaseModel):
    """A video task as the server reports it (``object: "video"``).

    Unknown fields are kept (``video.model_extra``); ``video_url`` is set only on
    success and is signed for a limited time (``expires_at`` when the server says).
    """

    model_config = ConfigDict(extra="allow")

    id: str
    object: str = "video"
    model: str = ""
    status: Annotated[VideoStatus, WrapValidator(_keep_unknown_status)]
    progress: int = 0
    created_at: int | None = None
    completed_at: int | None = None
    video_url: str | None = None
    task_id: str | None = None
    error: VideoError | None = None
    expires_at: int | None = None

    @field_validator("progress", mode="before")
    @classmethod
    def _lenient_progress(cls, value: Any) -> Any:
        if value is None:
            return 0
        if isinstance(value, str):
            value = value.strip().rstrip("%") or "0"
        return value

    @field_validator("error", mode="before")
    @classmethod
    def _lenient_error(cls, value: Any) -> Any:
        if isinstance(value, str):
            return {"message": value}
        return value

    @property
    def normalized_status(self) -> str:
        """The status in the contract's spelling (``SUCCESS``, not ``completed``)."""
        return normalize_status(self.status)

    @property
    def is_terminal(self) -> bool:
        """Whether the task will not move again."""
        return is_terminal(self.status)

    @property
    def succeeded(self) -> bool:
        """Whether the task ended SUCCESS (any spelling)."""
        return self.normalized_status == "SUCCESS"

    @property
    def failed(self) -> bool:
        """Whether the task ended FAILED or ERROR (any spelling)."""
        return is_failure(self.status)
