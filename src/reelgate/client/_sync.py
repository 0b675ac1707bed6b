"""``Client``: the blocking twin. It only runs the shared flows (see ``_flows``)."""

from __future__ import annotations

import os
import time
from functools import cached_property
from pathlib import Path
from types import TracebackType
from typing import TypeVar, Unpack

import httpx

from reelgate.client import _flows
from reelgate.client._base import (
    DEFAULT_POLL_INTERVAL,
    DEFAULT_WAIT_TIMEOUT,
    Cadence,
    CreateParams,
)
from reelgate.client._files import atomic_file, image_of, target_path
from reelgate.client._flows import BaseClient, Effect, Flow, ProgressCallback
from reelgate.client.models import Video

T = TypeVar("T")


class Videos:
    """``client.videos``: the ``/v1/videos`` task API."""

    def __init__(self, client: Client) -> None:
        self._client = client

    def create(self, prompt: str, **params: Unpack[CreateParams]) -> Video:
        """Submit a task (``POST /v1/videos``, multipart); returns it, usually SUBMITTED.

        ``model`` is required; ``seconds``, ``size``, ``resolution`` and
        ``input_reference`` (an image path, bytes or binary file, for
        image-to-video) are optional: left out, the server's defaults apply.
        """
        flow = _flows.create(self._client._ctx, prompt, params, image_of(params))
        return self._client._run(flow)

    def retrieve(self, video_id: str) -> Video:
        """The task's current state (``GET /v1/videos/{id}``)."""
        return self._client._run(_flows.retrieve(self._client._ctx, video_id))

    def wait(
        self,
        video_id: str,
        *,
        timeout: float = DEFAULT_WAIT_TIMEOUT,
        poll_interval: float = DEFAULT_POLL_INTERVAL,
        on_progress: ProgressCallback | None = None,
    ) -> Video:
        """Poll until SUCCESS and return the task; raise ``TaskFailed`` on FAILED or ERROR.

        Polls every ``poll_interval`` seconds plus jitter (never sooner than the
        server asks), calls ``on_progress(video)`` with each state seen, rides
        out transient failures, and raises ``WaitTimeout`` after ``timeout``
        seconds in all.
        """
        cadence = Cadence(poll_interval)
        flow = _flows.wait(
            self._client._ctx, video_id, timeout=timeout, cadence=cadence, on_progress=on_progress
        )
        return self._client._run(flow)

    def create_and_wait(
        self,
        prompt: str,
        *,
        timeout: float = DEFAULT_WAIT_TIMEOUT,
        poll_interval: float = DEFAULT_POLL_INTERVAL,
        on_progress: ProgressCallback | None = None,
        **params: Unpack[CreateParams],
    ) -> Video:
        """:meth:`create`, then :meth:`wait` (``on_progress`` also sees the created task)."""
        ctx, cadence = self._client._ctx, Cadence(poll_interval)
        flow = _flows.create_and_wait(
            ctx,
            prompt,
            params,
            image_of(params),
            timeout=timeout,
            cadence=cadence,
            on_progress=on_progress,
        )
        return self._client._run(flow)

    def download(self, video: str | Video, path: str | os.PathLike[str]) -> Path:
        """Save a finished task's MP4 at ``path`` (or ``path/<id>.mp4`` for a folder).

        Streams into a temporary file beside it and renames it into place once
        whole; resumes a dropped connection with ``Range``; fetches a freshly
        signed URL when the old one is refused. Returns the final path.
        """
        target = target_path(path, video.id if isinstance(video, Video) else video)
        with atomic_file(target) as sink:
            self._client._run(_flows.download(self._client._ctx, video, sink))
        return target


class Client(BaseClient[httpx.Client]):
    """Blocking client for reelgate, or for CometAPI itself (same contract).

    ``Client(base_url=None, api_key=None, *, timeout=60.0, max_retries=None,
    retry=None, http_client=None)``; see :class:`BaseClient` for the arguments.
    Use it as a context manager, or call :meth:`close`.
    """

    _http_class = httpx.Client

    @cached_property
    def videos(self) -> Videos:
        """The ``/v1/videos`` task API."""
        return Videos(self)

    def close(self) -> None:
        """Close the connection pool (unless it was passed in)."""
        if self._owns_http:
            self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _run(self, flow: Flow[T]) -> T:
        outcome: object = None
        while True:
            try:
                effect = flow.send(outcome)
            except StopIteration as stop:
                result: T = stop.value
                return result
            outcome = self._perform(effect)

    def _perform(self, effect: Effect) -> object:
        if isinstance(effect, _flows.Send):
            try:
                return self._http.send(effect.request)
            except httpx.TransportError as exc:
                return exc
        if isinstance(effect, _flows.Sleep):
            time.sleep(effect.seconds)
            return None
        if isinstance(effect, _flows.Notify):
            effect.callback(effect.video)
            return None
        return self._stream(effect)

    def _stream(self, effect: _flows.Stream) -> _flows.Streamed:
        try:
            response = self._http.send(effect.request, stream=True)
        except httpx.TransportError as exc:
            return _flows.Streamed(None, exc)
        try:
            if effect.accept(response):
                for chunk in response.iter_raw():
                    effect.feed(chunk)
            else:
                response.read()
        except httpx.TransportError as exc:
            return _flows.Streamed(response, exc)
        finally:
            response.close()
        return _flows.Streamed(response)
