"""The pure base the sync and async clients share: no sockets, no sleeps.

Settings resolution, request building, response to model or exception
mapping, the retry policy and the polling cadence all live here, as plain
functions over ``httpx.Request`` / ``httpx.Response`` values.
"""

from __future__ import annotations

import email.utils
import json
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import IO, Any, BinaryIO, Required, TypedDict
from urllib.parse import quote, urlsplit

import httpx
from pydantic import ValidationError

from reelgate.client import errors
from reelgate.client.models import Video

DEFAULT_BASE_URL = "http://127.0.0.1:8000"
ENV_BASE_URL = "REELGATE_BASE_URL"
ENV_API_KEY = "REELGATE_API_KEY"
USER_AGENT = "reelgate-python/0.1.0"

DEFAULT_WAIT_TIMEOUT = 900.0
"""Seconds a wait may take in all, by default."""
DEFAULT_POLL_INTERVAL = 10.0
"""Seconds between polls, by default (CometAPI advises 10 to 20)."""

ImagePart = tuple[str, bytes, str]
"""An upload as ``(filename, content, media type)``."""
ImageInput = str | os.PathLike[str] | bytes | BinaryIO | IO[bytes]
"""An image for image-to-video: a path, the bytes themselves, or an open binary file."""


@dataclass(frozen=True)
class Settings:
    """Where the server is, how to prove who we are, and how long a request may take."""

    base_url: str
    api_key: str | None
    timeout: float


def resolve_settings(
    base_url: str | None,
    api_key: str | None,
    timeout: float,
    env: Mapping[str, str] | None = None,
) -> Settings:
    """Arguments first, then ``REELGATE_BASE_URL`` / ``REELGATE_API_KEY``, then defaults.

    A base URL ending in ``/v1`` (as the ``openai`` SDK spells it) is accepted too.
    """
    env = os.environ if env is None else env
    url = (base_url or env.get(ENV_BASE_URL) or DEFAULT_BASE_URL).strip().rstrip("/")
    if url.endswith("/v1"):
        url = url[: -len("/v1")]
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"base URL must start with http:// or https://, got {url!r}")
    key = api_key if api_key is not None else env.get(ENV_API_KEY)
    return Settings(base_url=url, api_key=key or None, timeout=timeout)


def _headers(
    settings: Settings, url: str, extra: Mapping[str, str] | None = None
) -> dict[str, str]:
    headers = {"User-Agent": USER_AGENT}
    # The key goes only to the server itself, never to an object store's presigned URL.
    if settings.api_key and _same_origin(url, settings.base_url):
        headers["Authorization"] = f"Bearer {settings.api_key}"
    headers.update(extra or {})
    return headers


def _same_origin(url: str, base_url: str) -> bool:
    a, b = urlsplit(url), urlsplit(base_url)
    return (a.scheme, a.netloc) == (b.scheme, b.netloc)


def _request(
    settings: Settings,
    method: str,
    url: str,
    *,
    headers: Mapping[str, str] | None = None,
    files: list[tuple[str, tuple[str | None, str | bytes, str | None]]] | None = None,
) -> httpx.Request:
    timeout = httpx.Timeout(settings.timeout).as_dict()
    return httpx.Request(
        method,
        url,
        headers=_headers(settings, url, headers),
        files=files,
        extensions={"timeout": timeout},
    )


class CreateParams(TypedDict, total=False):
    """The create call's fields besides the prompt; absent or ``None``: the server's default."""

    model: Required[str]
    """A model id from the catalog, e.g. ``doubao-seedance-2-0``."""
    seconds: int | str | None
    """Duration, in the model's range."""
    size: str | None
    """Aspect ratio: ``21:9``, ``16:9``, ``4:3``, ``1:1``, ``3:4`` or ``9:16``."""
    resolution: str | None
    """``480p``, ``720p`` or ``1080p``, as the model allows."""
    input_reference: ImageInput | None
    """An image (path, bytes or binary file) to animate: image-to-video."""


_FORM_FIELDS = ("model", "seconds", "size", "resolution")


def create_request(
    settings: Settings, prompt: str, params: CreateParams, image: ImagePart | None
) -> httpx.Request:
    """``POST /v1/videos`` as multipart/form-data, the way CometAPI's ``curl -F`` sends it."""
    unknown = set(params) - {*_FORM_FIELDS, "input_reference"}
    if unknown:
        raise TypeError(f"unexpected argument(s) for create: {', '.join(sorted(unknown))}")
    fields: dict[str, object] = {"prompt": prompt}
    fields.update({name: params.get(name) for name in _FORM_FIELDS})
    parts: list[tuple[str, tuple[str | None, str | bytes, str | None]]] = [
        (name, (None, str(value), None)) for name, value in fields.items() if value is not None
    ]
    if image is not None:
        parts.append(("input_reference", image))
    headers = {"Accept": "application/json"}
    url = f"{settings.base_url}/v1/videos"
    return _request(settings, "POST", url, headers=headers, files=parts)


def retrieve_request(settings: Settings, video_id: str) -> httpx.Request:
    """``GET /v1/videos/{id}``."""
    if not video_id or not video_id.strip():
        raise ValueError("a task id is required")
    url = f"{settings.base_url}/v1/videos/{quote(video_id.strip(), safe='')}"
    return _request(settings, "GET", url, headers={"Accept": "application/json"})


def file_request(settings: Settings, url: str, *, offset: int, etag: str | None) -> httpx.Request:
    """``GET`` a signed video URL, from byte ``offset`` on (``Range``) when resuming."""
    headers = {"Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
        if etag:
            headers["If-Range"] = etag
    return _request(settings, "GET", url, headers=headers)


# --- responses ---------------------------------------------------------------


def request_id(response: httpx.Response) -> str | None:
    """The ``X-Request-Id`` the server stamped on a response."""
    value: str | None = response.headers.get("x-request-id")
    return value


def _envelope(response: httpx.Response) -> tuple[str | None, str | None, str | None, Any]:
    """``(message, code, param, body)`` from CometAPI's error envelope, leniently."""
    try:
        body: Any = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        text = response.text.strip()
        return (text[:500] or None), None, None, text
    detail = body.get("error", body) if isinstance(body, dict) else body
    if isinstance(detail, str):
        return detail, None, None, body
    if not isinstance(detail, dict):
        return None, None, None, body
    message = detail.get("message") or detail.get("detail")
    code, param = detail.get("code"), detail.get("param")
    return (
        None if message is None else str(message),
        None if code is None else str(code),
        None if param is None else str(param),
        body,
    )


def _error_class(status: int, message: str, code: str) -> type[errors.APIStatusError]:
    if "task_not_exist" in (code, message):
        return errors.TaskNotFound
    if code == "MissingParameter":
        return errors.MissingParameter
    if code == "InvalidParameter" or status == 422 or "does not support model" in message:
        return errors.InvalidParameter
    by_status: dict[int, type[errors.APIStatusError]] = {
        400: errors.BadRequestError,
        401: errors.AuthenticationError,
        403: errors.PermissionDeniedError,
        404: errors.NotFoundError,
        429: errors.RateLimited,
    }
    if status >= 500:
        return errors.ServerError
    return by_status.get(status, errors.APIStatusError)


def error_from_response(response: httpx.Response) -> errors.APIStatusError:
    """Map an error response onto the client's exception tree (the one table)."""
    message, code, param, body = _envelope(response)
    status = response.status_code
    message = message or f"HTTP {status} {response.reason_phrase}".strip()
    cls = _error_class(status, message, code or "")
    exc = cls(
        message,
        status=status,
        code=code,
        request_id=request_id(response),
        param=param,
        body=body,
    )
    if isinstance(exc, errors.RateLimited):
        exc.retry_after = retry_after(response.headers)
    return exc


def error_from_transport(exc: httpx.TransportError) -> errors.APIConnectionError:
    """Map an httpx transport failure onto the client's exception tree."""
    try:
        url: object = exc.request.url
    except RuntimeError:  # no request attached
        url = "the server"
    cls = (
        errors.APITimeoutError
        if isinstance(exc, httpx.TimeoutException)
        else errors.APIConnectionError
    )
    kind = "timed out" if cls is errors.APITimeoutError else "failed"
    return cls(f"request to {url} {kind}: {exc or type(exc).__name__}")


def video_from_response(response: httpx.Response) -> Video:
    """The ``Video`` in a 2xx answer; raise the mapped error for anything else."""
    if not response.is_success:
        raise error_from_response(response)
    try:
        return Video.model_validate(response.json())
    except (ValueError, ValidationError) as exc:
        raise errors.ReelgateError(
            f"unexpected answer from {response.request.url}: {exc}",
            status=response.status_code,
            request_id=request_id(response),
        ) from exc


# --- timing --------------------------------------------------------------------


def _seconds(value: str | None, scale: float = 1.0) -> float | None:
    if value is None:
        return None
    try:
        seconds = float(value) / scale
    except ValueError:
        return None
    return seconds if seconds >= 0 else None


def retry_after(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """Seconds the server asks us to wait: ``retry-after-ms`` or ``Retry-After``.

    ``Retry-After`` may be a number of seconds or an HTTP date.
    """
    headers = httpx.Headers(headers)
    millis = _seconds(headers.get("retry-after-ms"), 1000.0)
    if millis is not None:
        return millis
    value = headers.get("retry-after")
    seconds = _seconds(value)
    if seconds is not None or value is None:
        return seconds
    try:
        when = email.utils.parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError):
        return None
    return max(0.0, when - (time.time() if now is None else now))


def poll_after(headers: Mapping[str, str]) -> float | None:
    """The least time the server wants between two polls, if it says."""
    headers = httpx.Headers(headers)
    hints = [_seconds(headers.get("openai-poll-after-ms"), 1000.0), retry_after(headers)]
    known = [hint for hint in hints if hint is not None]
    return max(known) if known else None


TRANSIENT_STATUSES = frozenset({408, 429})
"""Besides every 5xx."""
_NOT_PROCESSED_STATUSES = frozenset({408, 429, 503})
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


def is_transient(outcome: httpx.Response | httpx.TransportError, *, idempotent: bool) -> bool:
    """Whether trying again may help: connection errors, 408, 429 and 5xx.

    A request that is not idempotent (create) is repeated only when the server
    surely did not act on it: no connection, 408, 429 or 503.
    """
    if isinstance(outcome, httpx.TransportError):
        if not idempotent:
            return isinstance(outcome, _NOT_SENT)
        return isinstance(outcome, httpx.TimeoutException | httpx.NetworkError)
    status = outcome.status_code
    if not idempotent:
        return status in _NOT_PROCESSED_STATUSES
    return status in TRANSIENT_STATUSES or status >= 500


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to retry transient failures (jittered exponential backoff)."""

    max_retries: int = 2
    initial_backoff: float = 0.5
    max_backoff: float = 8.0
    max_retry_after: float = 60.0
    """A ``Retry-After`` longer than this is not waited out: the error is raised."""

    def delay(self, attempt: int, headers: Mapping[str, str] | None, rand: float) -> float | None:
        """Seconds before retry number ``attempt`` (0-based); ``None``: do not retry.

        The server's ``Retry-After`` wins; otherwise ``initial * 2**attempt`` capped
        at ``max_backoff``, shortened by up to a quarter at random (``rand`` in [0, 1)).
        """
        asked = retry_after(headers) if headers is not None else None
        if asked is not None:
            return asked if asked <= self.max_retry_after else None
        backoff = min(self.max_backoff, self.initial_backoff * 2.0**attempt)
        return backoff * (1 - 0.25 * rand)


@dataclass(frozen=True)
class Cadence:
    """When to poll next: ``interval`` plus up to ``jitter`` of it, never below the server's ask."""

    interval: float = 10.0
    jitter: float = 0.2

    def next_poll(self, headers: Mapping[str, str], rand: float) -> tuple[float, float]:
        """``(delay, floor)``: the chosen delay, and the least the server asked for."""
        floor = poll_after(headers) or 0.0
        delay = self.interval * (1 + self.jitter * rand)
        return max(delay, floor), floor
