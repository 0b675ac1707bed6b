"""The CometAPI adapter: ``/v1/videos`` at ``https://api.cometapi.com`` (or any server
of the same contract, reelgate itself included).

Requests:

- submit: ``POST /v1/videos`` as ``multipart/form-data`` (prompt, model, seconds, size
  as a ratio, resolution; ``input_reference`` as a file part). The answer's ``id``
  (or ``task_id``) is the upstream id.
- get: ``GET /v1/videos/{id}``.
- download: the ``video_url`` exactly as returned, with no credentials of ours.
- cancel: ``POST /v1/videos/{id}/cancel``; CometAPI may not have the route, so any 4xx
  answer but 429 is taken as "nothing more to do".
- find_lost: always None; CometAPI cannot list tasks.

A ``base_url`` that already ends in ``/v1`` is used as is (no second ``/v1``).

Statuses come in upper or lower case; both map (case is ignored):

=========================================================  =========================
upstream ``status``                                        ``UpstreamState``
=========================================================  =========================
SUBMITTED, QUEUED, PENDING, NOT_START                      QUEUED
IN_PROGRESS, RUNNING, PROCESSING                           RUNNING
SUCCESS, SUCCEEDED, COMPLETED                              SUCCEEDED (needs video_url)
FAILED, FAILURE                                            FAILED (see the codes below)
ERROR                                                      FAILED, ``upstream_error``
CANCELLED, CANCELED                                        CANCELLED
EXPIRED                                                    EXPIRED
anything else, or SUCCESS without ``video_url``            ``UpstreamBusy`` (asked again)
=========================================================  =========================

On FAILED the ``error.code`` (or type) decides our code: one that speaks of content,
moderation, sensitivity, policy or safety gives ``content_rejected``, any other
``upstream_failed``. The provider's message is kept (500 characters at most).
``progress`` (0..100, also ``"45%"``) is kept, 100 on SUCCESS; ``expires_at`` becomes
``video_expires_at`` (milliseconds are converted).

Errors (after ``HttpProvider.call``'s: 429/5xx busy, transport failures):

==============================================  ========================================
answer                                          raised
==============================================  ========================================
submit 401, 403                                 ``UpstreamRefused`` ``upstream_refused``
submit 408, 409                                 ``UpstreamBusy``
submit 4xx with a content code                  ``UpstreamRefused`` ``content_rejected``
submit other 4xx (InvalidParameter, …)          ``UpstreamRefused`` ``invalid_parameter``
submit 2xx without an id                        ``UpstreamUncertain``
get 400 ``task_not_exist``, get 404             ``UpstreamGone`` ``upstream_task_missing``
get any other 4xx                               ``UpstreamBusy`` (bounded by the watcher)
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
from reelgate.domain.errors import UpstreamBusy, UpstreamGone, UpstreamUncertain
from reelgate.ports import UpstreamJob, UpstreamState, UpstreamTask

STATES: dict[str, UpstreamState] = {
    "SUBMITTED": UpstreamState.QUEUED,
    "QUEUED": UpstreamState.QUEUED,
    "PENDING": UpstreamState.QUEUED,
    "NOT_START": UpstreamState.QUEUED,
    "IN_PROGRESS": UpstreamState.RUNNING,
    "RUNNING": UpstreamState.RUNNING,
    "PROCESSING": UpstreamState.RUNNING,
    "SUCCESS": UpstreamState.SUCCEEDED,
    "SUCCEEDED": UpstreamState.SUCCEEDED,
    "COMPLETED": UpstreamState.SUCCEEDED,
    "FAILED": UpstreamState.FAILED,
    "FAILURE": UpstreamState.FAILED,
    "ERROR": UpstreamState.FAILED,
    "CANCELLED": UpstreamState.CANCELLED,
    "CANCELED": UpstreamState.CANCELLED,
    "EXPIRED": UpstreamState.EXPIRED,
}
MISSING = "task_not_exist"


class CometApiProvider(HttpProvider):
    """A ``Provider`` for CometAPI's asynchronous video API."""

    kind = "cometapi"

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
        """``POST /v1/videos`` (multipart); the answer's ``id`` or ``task_id``."""
        fields = {
            "prompt": job.prompt,
            "model": job.model,
            "seconds": str(job.seconds),
            "size": job.size,
            "resolution": job.resolution,
        }
        files = wire.multipart(fields, job.image, job.image_type)
        response = await self.call("POST", f"{self._prefix}/videos", submit=True, files=files)
        if response.status_code >= 300:
            raise wire.refusal(self.name, response)
        data = self.body(response, submit=True)
        upstream_id = data.get("id") or data.get("task_id")
        if not isinstance(upstream_id, str) or not upstream_id:
            raise UpstreamUncertain(
                f"{self.name}: the provider accepted the task but sent no id", provider=self.name
            )
        return upstream_id

    async def get(self, upstream_id: str) -> UpstreamTask:
        """``GET /v1/videos/{id}``, mapped by the module's table."""
        response = await self.call("GET", wire.video_path(self._prefix, upstream_id))
        if response.status_code >= 300:
            error = wire.envelope(response)
            if response.status_code == 404 or MISSING in (error.code, error.message):
                raise UpstreamGone(
                    f"{self.name}: the provider has no task {upstream_id}",
                    code="upstream_task_missing",
                    provider=self.name,
                )
            raise UpstreamBusy(
                f"{self.name}: the provider answered {response.status_code} to a status request",
                provider=self.name,
            )
        return self._task(self.body(response))

    async def download(
        self, upstream_id: str, task: UpstreamTask, dest: Path, max_bytes: int
    ) -> None:
        """Stream ``video_url`` (asked again when ``task`` lacks it), without our key."""
        url = task.video_url or (await self.get(upstream_id)).video_url
        if not url:
            raise UpstreamGone(
                f"{self.name}: the task {upstream_id} has no video",
                code="upstream_video_unavailable",
                provider=self.name,
            )
        await self.stream(url, dest, max_bytes)

    async def cancel(self, upstream_id: str) -> None:
        """``POST /v1/videos/{id}/cancel``; a 4xx (no such route, already done) is fine."""
        await self.call("POST", wire.video_path(self._prefix, upstream_id, "cancel"))

    async def find_lost(
        self, job: UpstreamJob, *, since: float, known: Collection[str]
    ) -> str | None:
        """Always None: CometAPI has no way to list one's tasks."""
        return None

    def _task(self, data: dict[str, Any]) -> UpstreamTask:
        if "status" not in data and isinstance(data.get("data"), dict):
            data = data["data"]  # a gateway's {"code": …, "data": {…}} wrapping
        raw = data.get("status")
        status = raw.strip().upper() if isinstance(raw, str) else ""
        state = STATES.get(status)
        if state is None:
            raise UpstreamBusy(
                f"{self.name}: the provider sent an unknown status {str(raw)[:40]!r}",
                provider=self.name,
            )
        progress = wire.progress_of(data.get("progress"))
        if state is UpstreamState.SUCCEEDED:
            url = data.get("video_url")
            if not isinstance(url, str) or not url:
                raise UpstreamBusy(
                    f"{self.name}: the provider reported success without a video_url",
                    provider=self.name,
                )
            return UpstreamTask(
                state,
                progress=100,
                video_url=url,
                video_expires_at=wire.unix_seconds(data.get("expires_at")),
            )
        if state is UpstreamState.FAILED:
            return wire.ended(status, data.get("error"), progress, errored=status == "ERROR")
        return UpstreamTask(state, progress=progress)
