"""The client's protocol logic, written once for both twins (sans-I/O).

Each flow is a generator: it yields an *effect* (send this request, stream this
response into that file, sleep, tell the caller about progress) and receives
the effect's outcome. ``Client`` runs a flow with a blocking driver,
``AsyncClient`` with an awaiting one; neither holds any retry, wait or
download logic of its own. :class:`BaseClient` is the state both hold.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass, replace
from typing import IO, Any, Generic, TypeVar

import httpx

from reelgate.client import _base, errors
from reelgate.client._base import Cadence, RetryPolicy, Settings
from reelgate.client.models import Video

T = TypeVar("T")

ProgressCallback = Callable[[Video], object]
"""Called with each state a wait sees; the async client also awaits what it returns."""


@dataclass(frozen=True)
class Context:
    """What every flow needs: settings, retry policy, and the sources of time and chance."""

    settings: Settings
    retry: RetryPolicy
    rand: Callable[[], float] = random.random
    clock: Callable[[], float] = time.monotonic


HttpT = TypeVar("HttpT", httpx.Client, httpx.AsyncClient)


class BaseClient(Generic[HttpT]):
    """Settings, retry policy and connection pool, as both ``Client`` and ``AsyncClient`` take them.

    ``base_url`` and ``api_key`` default to ``REELGATE_BASE_URL`` and
    ``REELGATE_API_KEY``, then to ``http://127.0.0.1:8000`` and no key.
    ``timeout`` bounds each request (seconds); transient failures are retried
    ``max_retries`` times (default 2), or as ``retry`` says. Pass ``http_client``
    to bring your own httpx client (proxies, certificates); it is then not
    closed by this one.
    """

    _http_class: type[HttpT]

    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float = 60.0,
        max_retries: int | None = None,
        retry: RetryPolicy | None = None,
        http_client: HttpT | None = None,
    ) -> None:
        policy = retry or RetryPolicy()
        if max_retries is not None:
            policy = replace(policy, max_retries=max_retries)
        self._ctx = Context(_base.resolve_settings(base_url, api_key, timeout), policy)
        self._http: HttpT = self._http_class() if http_client is None else http_client
        self._owns_http = http_client is None

    @property
    def base_url(self) -> str:
        """The server's root URL, as resolved."""
        return self._ctx.settings.base_url


@dataclass(frozen=True)
class Send:
    """Send ``request`` and read the whole answer; outcome: the response or the transport error."""

    request: httpx.Request


@dataclass(frozen=True)
class Sleep:
    """Pause for ``seconds``; outcome: ``None``."""

    seconds: float


@dataclass(frozen=True)
class Notify:
    """Call ``callback(video)`` (and await the result in the async client)."""

    callback: ProgressCallback
    video: Video


@dataclass
class Stream:
    """Send ``request`` and write the body into ``sink``; outcome: a :class:`Streamed`.

    The driver calls :meth:`accept` once the headers are in, then :meth:`feed`
    with each raw chunk; ``position`` and ``written`` say where the bytes went.
    """

    request: httpx.Request
    sink: IO[bytes]
    offset: int
    position: int | None = None
    written: int = 0

    def accept(self, response: httpx.Response) -> bool:
        """Whether ``response`` carries the file; if so, position the sink for it."""
        self.position = _write_position(response, self.offset)
        if self.position is None:
            return False
        self.sink.seek(self.position)
        self.sink.truncate()
        return True

    def feed(self, chunk: bytes) -> None:
        """Write one chunk of the body."""
        self.sink.write(chunk)
        self.written += len(chunk)


@dataclass(frozen=True)
class Streamed:
    """How a :class:`Stream` ended: the response (if any) and the error that cut it (if any)."""

    response: httpx.Response | None
    error: httpx.TransportError | None = None


Effect = Send | Sleep | Notify | Stream
Flow = Generator[Effect, Any, T]


def call(ctx: Context, request: httpx.Request, *, idempotent: bool = True) -> Flow[httpx.Response]:
    """Send ``request``, retrying transient failures; the final response, of any status."""
    attempt = 0
    while True:
        outcome = yield Send(request)
        if attempt >= ctx.retry.max_retries:
            break
        if not _base.is_transient(outcome, idempotent=idempotent):
            break
        headers = outcome.headers if isinstance(outcome, httpx.Response) else None
        delay = ctx.retry.delay(attempt, headers, ctx.rand())
        if delay is None:
            break
        yield Sleep(delay)
        attempt += 1
    if isinstance(outcome, httpx.TransportError):
        raise _base.error_from_transport(outcome) from outcome
    assert isinstance(outcome, httpx.Response)
    return outcome


def create(
    ctx: Context, prompt: str, params: _base.CreateParams, image: _base.ImagePart | None
) -> Flow[Video]:
    """``POST /v1/videos``; ``image`` is ``params["input_reference"]`` read by the caller."""
    request = _base.create_request(ctx.settings, prompt, params, image)
    response = yield from call(ctx, request, idempotent=False)
    return _base.video_from_response(response)


def retrieve(ctx: Context, video_id: str) -> Flow[Video]:
    """``GET /v1/videos/{id}``, retrying transient failures."""
    response = yield from call(ctx, _base.retrieve_request(ctx.settings, video_id))
    return _base.video_from_response(response)


def wait(
    ctx: Context,
    video_id: str,
    *,
    timeout: float,
    cadence: Cadence,
    on_progress: ProgressCallback | None = None,
) -> Flow[Video]:
    """Poll until the task is terminal; return it on success, raise ``TaskFailed`` otherwise.

    Transient failures are retried with backoff until ``timeout`` (seconds, in
    all) runs out, then ``WaitTimeout`` is raised with the last error as cause.
    """
    deadline = ctx.clock() + timeout
    last: Video | None = None
    last_error: errors.ReelgateError | None = None
    failures = 0
    while True:
        outcome = yield Send(_base.retrieve_request(ctx.settings, video_id))
        if _base.is_transient(outcome, idempotent=True):
            headers: Mapping[str, str] = {}
            if isinstance(outcome, httpx.Response):
                headers, last_error = outcome.headers, _base.error_from_response(outcome)
            else:
                last_error = _base.error_from_transport(outcome)
            floor = _base.retry_after(headers) or 0.0
            delay = max(floor, ctx.retry.delay(failures, None, ctx.rand()) or 0.0)
            failures += 1
        elif isinstance(outcome, httpx.TransportError):
            raise _base.error_from_transport(outcome) from outcome
        else:
            last, last_error, failures = _base.video_from_response(outcome), None, 0
            if on_progress is not None:
                yield Notify(on_progress, last)
            if last.failed:
                raise errors.TaskFailed(last, request_id=_base.request_id(outcome))
            if last.is_terminal:
                return last
            delay, floor = cadence.next_poll(outcome.headers, ctx.rand())
        remaining = deadline - ctx.clock()
        if remaining <= 0 or floor > remaining:
            raise _wait_timeout(video_id, timeout, last) from last_error
        yield Sleep(min(delay, remaining))


def _wait_timeout(video_id: str, timeout: float, last: Video | None) -> errors.WaitTimeout:
    seen = "no answer" if last is None else f"last {last.status} at {last.progress}%"
    message = f"task {video_id} did not finish within {timeout:g}s ({seen})"
    return errors.WaitTimeout(message, task_id=video_id, video=last)


def create_and_wait(
    ctx: Context,
    prompt: str,
    params: _base.CreateParams,
    image: _base.ImagePart | None,
    *,
    timeout: float,
    cadence: Cadence,
    on_progress: ProgressCallback | None = None,
) -> Flow[Video]:
    """Create a task, report it, then :func:`wait` for it."""
    video = yield from create(ctx, prompt, params, image)
    if on_progress is not None:
        yield Notify(on_progress, video)
    if video.failed:
        raise errors.TaskFailed(video)
    if video.is_terminal:
        return video
    return (
        yield from wait(ctx, video.id, timeout=timeout, cadence=cadence, on_progress=on_progress)
    )


def _signed_url(ctx: Context, video_id: str, known: Video | None) -> Flow[str]:
    video = known if known is not None else (yield from retrieve(ctx, video_id))
    if video.video_url is None:
        message = f"task {video.id} is {video.status}: no video to download"
        if not video.is_terminal:
            message += " yet (wait for it first)"
        raise errors.DownloadError(message)
    return video.video_url


_URL_REFUSED = frozenset({401, 403, 410})
"""Answers to a signed URL that a freshly signed one may cure (expired, revoked)."""


@dataclass
class _Progress:
    offset: int = 0
    total: int | None = None
    etag: str | None = None
    refreshes: int = 0
    failures: int = 0


def download(
    ctx: Context, target: str | Video, sink: IO[bytes], *, max_refreshes: int = 3
) -> Flow[int]:
    """Stream a finished task's video into ``sink``; return the number of bytes.

    A dropped connection resumes with ``Range``; a refused (expired) signed URL
    is replaced by a fresh one from the task; the length is checked against
    ``Content-Length`` / ``Content-Range``.
    """
    known = target if isinstance(target, Video) and target.video_url else None
    video_id = target.id if isinstance(target, Video) else target
    url = yield from _signed_url(ctx, video_id, known)
    state = _Progress()
    while True:
        request = _base.file_request(ctx.settings, url, offset=state.offset, etag=state.etag)
        effect = Stream(request, sink, state.offset)
        outcome: Streamed = yield effect
        response = outcome.response
        if response is not None and effect.position is None:
            status = response.status_code
            if status == 416 and state.offset in (state.total, _content_range(response)[1]):
                return state.offset  # we already had it all
            if status in _URL_REFUSED and state.refreshes < max_refreshes:
                state.refreshes += 1
                url = yield from _signed_url(ctx, video_id, None)
                continue
            if status == 206:
                raise errors.DownloadError(f"unexpected Content-Range from {url}")
            if not _base.is_transient(response, idempotent=True):
                raise _base.error_from_response(response)
        elif response is not None:
            _account(state, response, effect)
            if state.offset == state.total or (outcome.error is None and state.total is None):
                return state.offset
            if state.total is not None and state.offset > state.total:
                raise errors.DownloadError(f"got {state.offset} bytes, expected {state.total}")
            if effect.written:
                continue  # the connection dropped after some progress: resume at once
        delay = ctx.retry.delay(state.failures, response.headers if response else None, ctx.rand())
        if state.failures >= ctx.retry.max_retries or delay is None:
            raise _download_failure(url, state, outcome)
        state.failures += 1
        yield Sleep(delay)


def _account(state: _Progress, response: httpx.Response, effect: Stream) -> None:
    assert effect.position is not None
    state.offset = effect.position + effect.written
    state.etag = response.headers.get("etag") or state.etag
    state.total = _total_length(response, effect.position)
    if effect.written:
        state.failures = 0


def _download_failure(url: str, state: _Progress, outcome: Streamed) -> errors.ReelgateError:
    if outcome.error is not None:
        return _base.error_from_transport(outcome.error)
    response = outcome.response
    if response is not None and not response.is_success:
        return _base.error_from_response(response)
    return errors.DownloadError(
        f"download of {url} stopped at {state.offset} of {state.total} bytes"
    )


def _content_range(response: httpx.Response) -> tuple[int | None, int | None]:
    """``(start, total)`` from ``Content-Range: bytes start-end/total`` (or ``bytes */total``)."""
    unit, _, spec = response.headers.get("content-range", "").partition(" ")
    span, _, total = spec.partition("/")
    start = span.partition("-")[0]
    if unit.strip() != "bytes":
        return None, None
    return (int(start) if start.isdigit() else None), (int(total) if total.isdigit() else None)


def _write_position(response: httpx.Response, offset: int) -> int | None:
    if response.status_code == 200:
        return 0
    start = _content_range(response)[0] if response.status_code == 206 else None
    return start if start is not None and start <= offset else None


def _total_length(response: httpx.Response, position: int) -> int | None:
    total = _content_range(response)[1] if response.status_code == 206 else None
    if total is not None:
        return total
    length = response.headers.get("content-length", "")
    return position + int(length) if length.isdigit() else None
