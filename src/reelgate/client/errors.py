"""The one exception tree of the reelgate client.

::

    ReelgateError                 every error the client raises on purpose
    ├── APIConnectionError        no answer: refused, reset, DNS (after the retries)
    │   └── APITimeoutError       a request ran past its timeout
    ├── APIStatusError            the server answered with an error status
    │   ├── BadRequestError       400 not covered below
    │   │   ├── InvalidParameter  400 InvalidParameter (``param`` names the field)
    │   │   │   └── MissingParameter  400 MissingParameter
    │   │   └── TaskNotFound      task_not_exist (unknown id, or another owner's)
    │   ├── AuthenticationError   401 missing, malformed or revoked key
    │   ├── PermissionDeniedError 403 (an expired or tampered signed URL)
    │   ├── NotFoundError         404 unknown route or file
    │   ├── RateLimited           429 (``retry_after`` in seconds, when sent)
    │   └── ServerError           5xx
    ├── WaitTimeout               ``wait`` ran past its total timeout
    ├── TaskFailed                ``wait`` saw FAILED or ERROR (``video`` holds the reason)
    └── DownloadError             the file could not be fetched whole

Every error carries ``status`` (the HTTP status, or ``None``), ``code`` and
``message`` (from the server's error envelope when there is one) and
``request_id`` (the ``X-Request-Id`` response header). The client converts
foreign errors (httpx) into this tree with ``raise ... from exc``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from reelgate.client.models import Video


class ReelgateError(Exception):
    """Base of every error the reelgate client raises on purpose."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.request_id = request_id

    def __str__(self) -> str:
        parts = [self.message]
        if self.status is not None:
            parts.append(f"HTTP {self.status}")
        if self.code and self.code != self.message:
            parts.append(f"code {self.code}")
        if self.request_id:
            parts.append(f"request id {self.request_id}")
        return parts[0] if len(parts) == 1 else f"{parts[0]} ({', '.join(parts[1:])})"


class APIConnectionError(ReelgateError):
    """The server could not be reached, or the connection broke."""


class APITimeoutError(APIConnectionError):
    """A single request ran past its timeout."""


class APIStatusError(ReelgateError):
    """The server answered with an error status (4xx or 5xx)."""

    def __init__(
        self,
        message: str,
        *,
        status: int,
        code: str | None = None,
        request_id: str | None = None,
        param: str | None = None,
        body: object = None,
    ) -> None:
        super().__init__(message, status=status, code=code, request_id=request_id)
        self.param = param
        self.body = body


class BadRequestError(APIStatusError):
    """400: the request was refused."""


class InvalidParameter(BadRequestError):
    """400 InvalidParameter: a field is outside its allowed set or range."""


class MissingParameter(InvalidParameter):
    """400 MissingParameter: a required field is absent or empty."""


class TaskNotFound(BadRequestError):
    """task_not_exist: no task with this id belongs to this key's owner."""


class AuthenticationError(APIStatusError):
    """401: the bearer token is missing, malformed, unknown or revoked."""


class PermissionDeniedError(APIStatusError):
    """403: refused, e.g. a signed download URL that expired or was altered."""


class NotFoundError(APIStatusError):
    """404: nothing lives at this path."""


class RateLimited(APIStatusError):
    """429: too many requests; ``retry_after`` says when to come back (seconds)."""

    retry_after: float | None = None


class ServerError(APIStatusError):
    """5xx: the server failed; the client retries these before raising."""


class WaitTimeout(ReelgateError):
    """``wait`` gave up after its total timeout; ``video`` is the last state seen."""

    def __init__(self, message: str, *, task_id: str, video: Video | None = None) -> None:
        super().__init__(message, code="wait_timeout")
        self.task_id = task_id
        self.video = video


class TaskFailed(ReelgateError):
    """The task ended FAILED or ERROR; ``video.error`` holds the server's reason.

    ``task_status`` is the normalised terminal status (``"FAILED"`` or ``"ERROR"``),
    ``code`` and ``message`` come from the task's ``error`` object.
    """

    def __init__(self, video: Video, *, request_id: str | None = None) -> None:
        reason = video.error
        code = reason.code if reason and reason.code else None
        detail = reason.message if reason and reason.message else "no reason given"
        self.task_status = video.normalized_status
        super().__init__(
            f"task {video.id} ended {self.task_status}: {detail}",
            code=code,
            request_id=request_id,
        )
        self.video = video
        self.task_id = video.id
        self.reason = detail


class DownloadError(ReelgateError):
    """The video could not be fetched whole (no URL yet, or a size mismatch)."""
