"""``AsyncClient``: the awaiting twin of ``Client``; it only runs the shared flows."""

from __future__ import annotations

import inspect
import os
from pathlib import Path
from types import TracebackType
from typing import TypeVar

import anyio
import anyio.to_thread
import httpx

from reelgate.client import _flows
from reelgate.client._base import Cadence, ImagePart, RetryPolicy
from reelgate.client._files import ImageInput, atomic_file, image_part, target_path
from reelgate.client._flows import Effect, Flow, ProgressCallback
from reelgate.client._sync import DEFAULT_POLL_INTERVAL, DEFAULT_WAIT_TIMEOUT
from reelgate.client.models import Video

T = TypeVar("T")


class AsyncVideos:
    """``client.videos``: the ``/v1/videos`` task API, awaitable."""

    def __init__(self, client: AsyncClient) -> None:
        self._client = client

    async def create(
        self,
        prompt: str,
        *,
        model: str,
        seconds: int | str | None = None,
        size: str | None = None,
        resolution: str | None = None,
        input_reference: ImageInput | None = None,
    ) -> Video:
        """Submit a task (``POST /v1/videos``, multipart); returns it, usually SUBMITTED.

        ``input_reference`` (a path, bytes or binary file) makes it image-to-video.
        Fields left ``None`` take the server's defaults.
        """
        image = await _image(input_reference)
        fields = _flows.create_fields(prompt, model, seconds, size, resolution)
        return await self._client._run(_flows.create(self._client._ctx, image, **fields))

    async def retrieve(self, video_id: str) -> Video:
        """The task's current state (``GET /v1/videos/{id}``)."""
        return await self._client._run(_flows.retrieve(self._client._ctx, video_id))

    async def wait(
        self,
        video_id: str,
        *,
        timeout: float = DEFAULT_WAIT_TIMEOUT,
        poll_interval: float = DEFAULT_POLL_INTERVAL,
        on_progress: ProgressCallback | None = None,
    ) -> Video:
        """Poll until SUCCESS and return the task; raise ``TaskFailed`` on FAILED or ERROR.

        Polls every ``poll_interval`` seconds plus jitter (never sooner than the
        server asks), calls ``on_progress(video)`` with each state seen, and raises
        ``WaitTimeout`` after ``timeout`` seconds in all.
        """
        flow = _flows.wait(
            self._client._ctx,
            video_id,
            timeout=timeout,
            cadence=Cadence(poll_interval),
            on_progress=on_progress,
        )
        return await self._client._run(flow)

    async def create_and_wait(
        self,
        prompt: str,
        *,
        model: str,
        seconds: int | str | None = None,
        size: str | None = None,
        resolution: str | None = None,
        input_reference: ImageInput | None = None,
        timeout: float = DEFAULT_WAIT_TIMEOUT,
        poll_interval: float = DEFAULT_POLL_INTERVAL,
        on_progress: ProgressCallback | None = None,
    ) -> Video:
        """:meth:`create`, then :meth:`wait` (``on_progress`` also sees the created task)."""
        image = await _image(input_reference)
        fields = _flows.create_fields(prompt, model, seconds, size, resolution)
        cadence = Cadence(poll_interval)
        flow = _flows.create_and_wait(
            self._client._ctx,
            image,
            timeout=timeout,
            cadence=cadence,
            on_progress=on_progress,
            **fields,
        )
        return await self._client._run(flow)

    async def download(self, video: str | Video, path: str | os.PathLike[str]) -> Path:
        """Save a finished task's MP4 at ``path`` (or ``path/<id>.mp4`` for a folder).

        Streams into a temporary file beside it and renames it into place once
        whole; resumes a dropped connection with ``Range``; fetches a freshly
        signed URL when the old one is refused. Returns the final path.
        """
        target = target_path(path, video.id if isinstance(video, Video) else video)
        with atomic_file(target) as sink:
            await self._client._run(_flows.download(self._client._ctx, video, sink))
        return target


class AsyncClient:
    """Async client for reelgate, or for CometAPI itself (same contract, same API as ``Client``).

    ``base_url`` and ``api_key`` default to ``REELGATE_BASE_URL`` and
    ``REELGATE_API_KEY``, then to ``http://127.0.0.1:8000`` and no key.
    ``timeout`` bounds each request; transient failures are retried
    ``max_retries`` times (or per ``retry``). Pass ``http_client`` to bring your
    own ``httpx.AsyncClient`` (proxies, certificates); it is then not closed here.
    """

    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float = 60.0,
        max_retries: int | None = None,
        retry: RetryPolicy | None = None,
        http_client: httpx.AsyncClient | None = None,
    ) -> None:
        self._ctx = _flows.make_context(
            base_url, api_key, timeout=timeout, max_retries=max_retries, retry=retry
        )
        self._http = http_client or httpx.AsyncClient()
        self._owns_http = http_client is None
        self.videos = AsyncVideos(self)

    @property
    def base_url(self) -> str:
        """The server's root URL, as resolved."""
        return self._ctx.settings.base_url

    async def close(self) -> None:
        """Close the connection pool (unless it was passed in)."""
        if self._owns_http:
            await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def _run(self, flow: Flow[T]) -> T:
        outcome: object = None
        while True:
            try:
                effect = flow.send(outcome)
            except StopIteration as stop:
                result: T = stop.value
                return result
            outcome = await self._perform(effect)

    async def _perform(self, effect: Effect) -> object:
        if isinstance(effect, _flows.Send):
            try:
                return await self._http.send(effect.request)
            except httpx.TransportError as exc:
                return exc
        if isinstance(effect, _flows.Sleep):
            await anyio.sleep(effect.seconds)
            return None
        if isinstance(effect, _flows.Notify):
            result = effect.callback(effect.video)
            if inspect.isawaitable(result):
                await result
            return None
        return await self._stream(effect)

    async def _stream(self, effect: _flows.Stream) -> _flows.Streamed:
        try:
            response = await self._http.send(effect.request, stream=True)
        except httpx.TransportError as exc:
            return _flows.Streamed(None, exc)
        try:
            if effect.accept(response):
                async for chunk in response.aiter_raw():
                    effect.feed(chunk)
            else:
                await response.aread()
        except httpx.TransportError as exc:
            return _flows.Streamed(response, exc)
        finally:
            await response.aclose()
        return _flows.Streamed(response)


async def _image(image: ImageInput | None) -> ImagePart | None:
    return None if image is None else await anyio.to_thread.run_sync(image_part, image)
