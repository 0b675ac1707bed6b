"""The one exception tree of reelgate's server side.

::

    ReelgateError
    ├── InvalidRequest            400, the client sent something we refuse
    │   ├── InvalidParameter      400 InvalidParameter, names the param
    │   ├── MissingParameter      400 MissingParameter, names the param
    │   ├── UnsupportedTaskType   400 InvalidParameter, r2v on a text-only model
    │   └── HostUnresolvable      400 InvalidParameter, a webhook URL's host does not resolve
    ├── TaskNotFound              400 task_not_exist (unknown id or another owner's)
    ├── AuthenticationError       401
    ├── Forbidden                 403 (bad or expired signed URL)
    ├── NotFound                  404 (unknown route or file)
    │   └── FilesExpired          410 files_expired: retention deleted the task's files
    ├── PayloadTooLarge           413
    ├── UnsupportedMediaType      415
    ├── RateLimited               429 rate_limited, active_tasks_limit, daily_seconds_limit,
    │                             queue_full (a key's limits, the global queue cap)
    ├── Conflict                  state-machine refusals
    │   ├── IllegalTransition     the status machine forbids the move
    │   ├── LeaseLost             the worker no longer owns the task
    │   ├── ContentNotReady       409 video_not_ready: a task's content before SUCCESS
    │   ├── TaskNotCancellable    409 task_not_cancellable: the task already finished
    │   └── IdempotencyConflict   409 idempotency_key_reused: the key came with another request
    ├── Unavailable               503 (the database or storage is away)
    ├── RenderError               a renderer could not finish
    │   └── RenderRejected        the renderer rejected the input (task ends FAILED)
    └── UpstreamError             a provider call failed (never reaches a client as such)
        ├── UpstreamRefused       the provider refused the task for good (task ends FAILED)
        ├── UpstreamBusy          not accepted or not answered now: retry later, or fall back
        ├── UpstreamUncertain     the request may have reached the provider; outcome unknown
        └── UpstreamGone          the upstream task or its video is gone (task ends ERROR)

Adapters convert foreign errors into this tree with ``raise ... from exc``.
The API maps each class to an HTTP answer in one table (``reelgate.api.errors``).
"""

from __future__ import annotations


class ReelgateError(Exception):
    """Base of every error reelgate raises on purpose."""

    code: str = "internal_error"

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code


class InvalidRequest(ReelgateError):
    """The request is malformed or asks for something we do not allow."""

    code = "invalid_request"


class InvalidParameter(InvalidRequest):
    """A parameter is outside its allowed set or range."""

    code = "InvalidParameter"


class MissingParameter(InvalidRequest):
    """A required parameter is absent or empty."""

    code = "MissingParameter"


class UnsupportedTaskType(InvalidParameter):
    """An image was given to a model that only does text-to-video."""


class HostUnresolvable(InvalidParameter):
    """A webhook URL's host does not resolve (now): at delivery, a reason to retry later."""


class TaskNotFound(ReelgateError):
    """No task with this id belongs to the caller."""

    code = "task_not_exist"

    def __init__(self, message: str = "task_not_exist") -> None:
        super().__init__(message)


class AuthenticationError(ReelgateError):
    """The bearer token is missing, malformed, unknown or revoked."""

    code = "invalid_api_key"


class Forbidden(ReelgateError):
    """A signed URL is tampered with or expired."""

    code = "forbidden"


class NotFound(ReelgateError):
    """Nothing lives at this path."""

    code = "not_found"


class FilesExpired(NotFound):
    """The task's files were deleted by retention (``domain.retention``); for ever."""

    code = "files_expired"


class PayloadTooLarge(ReelgateError):
    """The body or an uploaded file is larger than allowed."""

    code = "payload_too_large"


class UnsupportedMediaType(ReelgateError):
    """The body's content type is not one we read."""

    code = "unsupported_media_type"


class RateLimited(ReelgateError):
    """Too many requests; ``retry_after`` says when to come back (seconds)."""

    code = "rate_limited"

    def __init__(self, message: str, *, retry_after: int = 1, code: str | None = None) -> None:
        super().__init__(message, code=code)
        self.retry_after = retry_after


class Conflict(ReelgateError):
    """The stored state does not allow the requested change."""

    code = "conflict"


class IllegalTransition(Conflict):
    """The status machine forbids this move (or the task already moved on)."""

    code = "illegal_transition"


class LeaseLost(Conflict):
    """The worker's lease on a task expired or was taken by another worker."""

    code = "lease_lost"


class ContentNotReady(Conflict):
    """A task's video (or thumbnail) was asked for before the task ended SUCCESS."""

    code = "video_not_ready"


class TaskNotCancellable(Conflict):
    """A cancel of a task that already finished (SUCCESS, FAILED or ERROR)."""

    code = "task_not_cancellable"


class IdempotencyConflict(Conflict):
    """An ``Idempotency-Key`` already used (within 24 hours) with a different request."""

    code = "idempotency_key_reused"


class Unavailable(ReelgateError):
    """A backing service (database, storage) does not answer."""

    code = "service_unavailable"


class RenderError(ReelgateError):
    """A renderer failed for an internal reason; the task may be retried."""

    code = "render_error"


class RenderRejected(RenderError):
    """A renderer refused the task's input; the task ends FAILED, not retried."""

    code = "content_rejected"


class UpstreamError(ReelgateError):
    """A call to an upstream provider failed; ``provider`` names it."""

    code = "upstream_error"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        provider: str = "",
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, code=code)
        self.provider = provider
        self.retry_after = retry_after


class UpstreamRefused(UpstreamError):
    """The provider refused the task (content moderation, an invalid parameter): FAILED.

    ``code`` is stable (``content_rejected``, ``invalid_parameter``, …) and ``message``
    is safe to show to the client.
    """

    code = "upstream_rejected"


class UpstreamBusy(UpstreamError):
    """Not accepted or not answered now (429, overload, 5xx, a connect failure).

    At submit the provider surely does not have the task: retrying or falling back
    to the next route is safe. ``retry_after`` is the provider's advice, in seconds.
    """

    code = "upstream_unavailable"


class UpstreamUncertain(UpstreamError):
    """The request was sent and no answer came (a read timeout, a cut connection).

    At submit the provider may have the task: it must not be submitted again blindly.
    """

    code = "upstream_submit_unknown"


class UpstreamGone(UpstreamError):
    """The upstream task or its video no longer exists (expired, deleted): ERROR."""

    code = "upstream_gone"
