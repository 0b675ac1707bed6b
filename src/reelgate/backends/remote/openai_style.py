"""The OpenAI-style adapter: OpenAI's Videos API as served by OpenAI, vLLM-Omni and others.

Requests (``base_url`` without ``/v1``, or ending in it; both work):

- submit: ``POST /v1/videos`` as ``multipart/form-data``: prompt, model, ``seconds`` as a
  string (``"8"``), ``size`` in pixels (``"1280x720"``, from our ratio and resolution by
  ``reelgate.domain.catalog.frame_size``) and ``input_reference`` as a file part. The
  answer is a video object; its ``id`` is the upstream id.
- get: ``GET /v1/videos/{id}``.
- download: ``GET /v1/videos/{id}/content`` with the provider's key. The video object
  carries no URL: on completion ``UpstreamTask.video_url`` is that content route's
  absolute URL (so that a watcher that wants a URL has one); ``download`` always asks
  the configured base URL's content route, so our key goes nowhere else.
- cancel: ``DELETE /v1/videos/{id}``; any 4xx answer but 429 is taken as "nothing more
  to do" (already gone, or a server without the route).
- find_lost: always None; a lost submission cannot be matched unambiguously (the list
  route, where there is one, shows neither prompts nor our task ids).

Statuses (case is ignored):

=================================  ================================================
upstream ``status``                ``UpstreamState``
=================================  ================================================
queued, pending, submitted         QUEUED
in_progress, running, processing   RUNNING
completed, succeeded, success      SUCCEEDED (``expires_at`` -> ``video_expires_at``,
                                   ``video_url``: the content route)
failed, failure                    FAILED (see the codes below)
error                              FAILED, ``upstream_error``
cancelled, canceled                CANCELLED
expired                            EXPIRED
anything else                      ``UpstreamBusy`` (asked again)
=================================  ================================================

On FAILED, ``error.code`` decides our code: a content policy code
(``moderation_blocked``, ``content_policy_violation``, anything that speaks of content,
moderation, sensitivity, policy or safety) gives ``content_rejected``, any other
``upstream_failed``; the provider's message is kept. ``progress`` is kept, 100 on
completion.

Errors, in OpenAI's envelope ``{"error": {message, type, param, code}}`` (after
``HttpProvider.call``'s: 429/5xx busy, transport failures):

==============================================  ========================================
answer                                          raised
==============================================  ========================================
submit 401, 403                                 ``UpstreamRefused`` ``upstream_refused``
submit 408, 409                                 ``UpstreamBusy``
submit 4xx with a content policy code           ``UpstreamRefused`` ``content_rejected``
submit other 4xx                                ``UpstreamRefused`` ``invalid_parameter``
a job whose size/resolution has no pixels       ``UpstreamRefused`` ``invalid_parameter``
submit 2xx without an id                        ``UpstreamUncertain``
get 404, or 400 ``task_not_exist``              ``UpstreamGone`` ``upstream_task_missing``
get any other 4xx                               ``UpstreamBusy`` (bounded by the watcher)
content 401/403/404/410                         ``UpstreamGone`` ``upstream_video_expired``
==============================================  ========================================
"""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path
from typing import Any

import httpx

from reelgate.backends.remote import wire
from reelgate.backends.remote.http import HttpProvider
from reelgate.config import ProviderConfig
from reelgate.domain.catalog import frame_size
from reelgate.domain.errors import UpstreamBusy, UpstreamGone, UpstreamRefused, UpstreamUncertain
from reelgate.ports import UpstreamJob, UpstreamState, UpstreamTask

STATES: dict[str, UpstreamState] = {
    "queued": UpstreamState.QUEUED,
    "pending": UpstreamState.QUEUED,
    "submitted": UpstreamState.QUEUED,
    "in_progress": UpstreamState.RUNNING,
    "running": UpstreamState.RUNNING,
    "processing": UpstreamState.RUNNING,
    "completed": UpstreamState.SUCCEEDED,
    "succeeded": UpstreamState.SUCCEEDED,
    "success": UpstreamState.SUCCEEDED,
    "failed": UpstreamState.FAILED,
    "failure": UpstreamState.FAILED,
    "error": UpstreamState.FAILED,
    "cancelled": UpstreamState.CANCELLED,
    "canceled": UpstreamState.CANCELLED,
    "expired": UpstreamState.EXPIRED,
}
MISSING = ("task_not_exist", "not_found", "video_not_found")


def pixel_size(size: str, resolution: str) -> str:
    """OpenAI's ``size`` (``"1280x720"``) for our ratio and resolution."""
    width, height = frame_size(size, resolution)
    return f"{width}x{height}"


class OpenAiStyleProvider(HttpProvider):
    """A ``Provider`` for servers of OpenAI's Videos API."""

    kind = "openai"

    def __init__(
        self,
        name: str,
        config: ProviderConfig,
        api_key: str,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        super().__init__(name, config, api_key, transport=transport)
        self._prefix = wire.api_prefix(config.base_url)

    async def submit(self, job: UpstreamJob) -> str:
        """``POST /v1/videos`` (multipart); the video object's ``id``."""
        try:
            size = pixel_size(job.size, job.resolution)
        except (KeyError, ValueError) as exc:
            raise UpstreamRefused(
                f"size {job.size!r} at resolution {job.resolution!r} has no pixel size",
                code="invalid_parameter",
                provider=self.name,
            ) from exc
        fields = {
            "prompt": job.prompt,
            "model": job.model,
            "seconds": str(job.seconds),
            "size": size,
        }
        files = wire.multipart(fields, job.image, job.image_type)
        response = await self.call("POST", f"{self._prefix}/videos", submit=True, files=files)
        if response.status_code >= 300:
            raise wire.refusal(self.name, response)
        upstream_id = self.body(response, submit=True).get("id")
        if not isinstance(upstream_id, str) or not upstream_id:
            raise UpstreamUncertain(
                f"{self.name}: the provider accepted the video but sent no id", provider=self.name
            )
        return upstream_id

    async def get(self, upstream_id: str) -> UpstreamTask:
        """``GET /v1/videos/{id}``, mapped by the module's table."""
        response = await self.call("GET", wire.video_path(self._prefix, upstream_id))
        if response.status_code >= 300:
            error = wire.envelope(response)
            if response.status_code == 404 or error.code in MISSING or error.message in MISSING:
                raise UpstreamGone(
                    f"{self.name}: the provider has no video {upstream_id}",
                    code="upstream_task_missing",
                    provider=self.name,
                )
            raise UpstreamBusy(
                f"{self.name}: the provider answered {response.status_code} to a status request",
                provider=self.name,
            )
        return self._task(self.body(response), upstream_id)

    async def download(
        self, upstream_id: str, task: UpstreamTask, dest: Path, max_bytes: int
    ) -> None:
        """Stream ``GET /v1/videos/{id}/content``, with the provider's key."""
        path = wire.video_path(self._prefix, upstream_id, "content")
        await self.stream(path, dest, max_bytes, authorized=True)

    async def cancel(self, upstream_id: str) -> None:
        """``DELETE /v1/videos/{id}``; a 4xx (already gone, no such route) is fine."""
        await self.call("DELETE", wire.video_path(self._prefix, upstream_id))

    async def find_lost(
        self, job: UpstreamJob, *, since: float, known: Collection[str]
    ) -> str | None:
        """Always None: no listing identifies our submission unambiguously."""
        return None

    def _task(self, data: dict[str, Any], upstream_id: str) -> UpstreamTask:
        raw = data.get("status")
        status = raw.strip().lower() if isinstance(raw, str) else ""
        state = STATES.get(status)
        if state is None:
            raise UpstreamBusy(
                f"{self.name}: the provider sent an unknown status {str(raw)[:40]!r}",
                provider=self.name,
            )
        progress = wire.progress_of(data.get("progress"))
        if state is UpstreamState.SUCCEEDED:
            path = wire.video_path(self._prefix, upstream_id, "content")
            return UpstreamTask(
                state,
                progress=100,
                video_url=self.config.base_url.rstrip("/") + path,
                video_expires_at=wire.unix_seconds(data.get("expires_at")),
            )
        if state is UpstreamState.FAILED:
            return wire.ended(status, data.get("error"), progress, errored=status == "error")
        return UpstreamTask(state, progress=progress)
