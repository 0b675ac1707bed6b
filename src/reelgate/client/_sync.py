"""``Client``: the blocking twin. It only runs the shared flows (see ``_flows``)."""

from __future__ import annotations

import os
import time
from pathlib import Path
from types import TracebackType
from typing import TypeVar

import httpx

from reelgate.client import _flows
from reelgate.client._base import Cadence, RetryPolicy
from reelgate.client._files import ImageInput, atomic_file, image_part, target_path
from reelgate.client._flows import Effect, Flow, ProgressCallback
from reelgate.client.models import Video

T = TypeVar("T")

DEFAULT_WAIT_TIMEOUT = 900.0
DEFAULT_POLL_INTERVAL = 10.0


class Videos:
    """``client.videos``: the ``/v1/videos`` task API."""

    def __init__(self, client: Client) -> None:
        self._client = client

    def create(
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
        image = None if input_reference is None else image_part(input_reference)
        fields = _flows.create_fields(prompt, model, seconds, size, resolution)
        return self._client._run(_flows.create(self._client._ctx, image, **fields))

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
        return self._client._run(flow)

    def create_and_wait(
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
        image = None if input_reference is None else image_part(input_reference)
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


class Client:
    """Blocking client for reelgate, or for CometAPI itself (same contract).

    ``base_url`` and ``api_key`` default to ``REELGATE_BASE_URL`` and
    ``REELGATE_API_KEY``, then to ``http://127.0.0.1:8000`` and no key.
    ``timeout`` bounds each request; transient failures are retried
    ``max_retries`` times (or per ``retry``). Pass ``http_client`` to bring your
    own ``httpx.Client`` (proxies, certificates); it is then not closed here.
    """

    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float = 60.0,
        max_retries: int | None = None,
        retry: RetryPolicy | None = None,
        http_client: httpx.Client | None = None,
    ) -> None:
        self._ctx = _flows.make_context(
            base_url, api_key, timeout=timeout, max_retries=max_retries, retry=retry
        )
        self._http = http_client or httpx.Client()
        self._owns_http = http_client is None
        self.videos = Videos(self)

    @property
    def base_url(self) -> str:
        """The server's root URL, as resolved."""
        return self._ctx.settings.base_url

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
