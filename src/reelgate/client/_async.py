"""``AsyncClient``: the awaiting twin of ``Client``; it only runs the shared flows."""

from __future__ import annotations

import inspect
import os
from functools import cached_property
from pathlib import Path
from types import TracebackType
from typing import TypeVar, Unpack

import anyio
import anyio.to_thread
import httpx

from reelgate.client import _flows
from reelgate.client._base import (
    DEFAULT_POLL_INTERVAL,
    DEFAULT_WAIT_TIMEOUT,
    Cadence,
    CreateParams,
    ImagePart,
)
from reelgate.client._files import atomic_file, image_of, target_path
from reelgate.client._flows import BaseClient, Effect, Flow, ProgressCallback
from reelgate.client.models import Video

T = TypeVar("T")


class AsyncVideos:
    """``client.videos``: the ``/v1/videos`` task API, awaitable."""

    def __init__(self, client: AsyncClient) -> None:
        self._client = client

    async def create(self, prompt: str, **params: Unpack[CreateParams]) -> Video:
        """Like :meth:`Videos.create`, awaitable."""
        flow = _flows.create(self._client._ctx, prompt, params, await _image_of(params))
        return await self._client._run(flow)

    async def retrieve(self, video_id: str) -> Video:
        """Like :meth:`Videos.retrieve`, awaitable."""
        return await self._client._run(_flows.retrieve(self._client._ctx, video_id))

    async def wait(
        self,
        video_id: str,
        *,
        timeout: float = DEFAULT_WAIT_TIMEOUT,
        poll_interval: float = DEFAULT_POLL_INTERVAL,
        on_progress: ProgressCallback | None = None,
    ) -> Video:
        """Like :meth:`Videos.wait`, awaitable."""
        cadence = Cadence(poll_interval)
        flow = _flows.wait(
            self._client._ctx, video_id, timeout=timeout, cadence=cadence, on_progress=on_progress
        )
        return await self._client._run(flow)

    async def create_and_wait(
        self,
        prompt: str,
        *,
        timeout: float = DEFAULT_WAIT_TIMEOUT,
        poll_interval: float = DEFAULT_POLL_INTERVAL,
        on_progress: ProgressCallback | None = None,
        **params: Unpack[CreateParams],
    ) -> Video:
        """Like :meth:`Videos.create_and_wait`, awaitable."""
        ctx, cadence = self._client._ctx, Cadence(poll_interval)
        flow = _flows.create_and_wait(
            ctx,
            prompt,
            params,
            await _image_of(params),
            timeout=timeout,
            cadence=cadence,
            on_progress=on_progress,
        )
        return await self._client._run(flow)

    async def download(self, video: str | Video, path: str | os.PathLike[str]) -> Path:
        """Like :meth:`Videos.download`, awaitable."""
        target = target_path(path, video.id if isinstance(video, Video) else video)
        with atomic_file(target) as sink:
            await self._client._run(_flows.download(self._client._ctx, video, sink))
        return target


class AsyncClient(BaseClient[httpx.AsyncClient]):
    """Async client for reelgate or CometAPI: the same API as ``Client``, awaitable.

    ``AsyncClient(base_url=None, api_key=None, *, timeout=60.0, max_retries=None,
    retry=None, http_client=None)``; see :class:`BaseClient` for the arguments.
    Use it as an async context manager, or await :meth:`close`.
    """

    _http_class = httpx.AsyncClient

    @cached_property
    def videos(self) -> AsyncVideos:
        """The ``/v1/videos`` task API."""
        return AsyncVideos(self)

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


async def _image_of(params: CreateParams) -> ImagePart | None:
    # Reading the image file happens off the event loop.
    return await anyio.to_thread.run_sync(image_of, params)
