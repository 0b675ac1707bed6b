"""Seedance on BytePlus ModelArk / Volcengine Ark: the content-generation task API.

The adapter speaks ``/contents/generations/tasks`` under the provider's base URL
(``https://ark.ap-southeast.bytepluses.com/api/v3``, ``https://ark.cn-beijing.volces.com/api/v3``)
with a bearer key:

======================================  ===================================================
``POST   /contents/generations/tasks``       create; answers ``{"id": "cgt-…"}``
``GET    /contents/generations/tasks/{id}``  the task: ``status``, ``content.video_url``, …
``GET    /contents/generations/tasks``       list, newest first (``filter.model``, pages)
``DELETE /contents/generations/tasks/{id}``  cancel a queued task, or forget a finished one
======================================  ===================================================

Ark's refusals (``{"error": {"code", "message", …}}``) become stable codes of ours:

=========================================================  ======================
Ark's code (or status)                                     our code
=========================================================  ======================
``*SensitiveContentDetected*``, ``*RiskDetection*``        ``content_rejected``
``InvalidParameter*``, ``MissingParameter*``, 413          ``invalid_parameter``
``ModelNotOpen``, ``ResourceNotFound``, 401, 403, 404, …   ``upstream_refused``
a task that ends ``failed`` for another reason             ``upstream_failed``
=========================================================  ======================

That table is for a create. Reading a task, 404 is ``UpstreamGone``
(``upstream_task_missing``) and any other refusal is ``UpstreamBusy``: the task itself
was not refused. 429 and 5xx (``RateLimitExceeded``, ``QuotaExceeded``, ``ServerOverloaded``,
``InternalServiceError``, ``ServiceUnavailable``) are ``UpstreamBusy`` through
``HttpProvider.call``. Messages shown to clients are Ark's own text with URLs, paths and
our key taken out.

The finished video lives on an object store behind a presigned URL valid for 24 hours;
it is downloaded exactly as Ark wrote it (its signature is percent-encoded) and without
our key.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Collection
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from reelgate.backends.remote.http import HttpProvider
from reelgate.config import ProviderConfig
from reelgate.domain.errors import UpstreamBusy, UpstreamGone, UpstreamRefused, UpstreamUncertain
from reelgate.ports import UpstreamJob, UpstreamState, UpstreamTask

TASKS = "/contents/generations/tasks"
VIDEO_URL_TTL = 24 * 3600  # Ark keeps a finished task's video URL valid this long
LOST_SLACK = 5.0  # seconds of clock skew allowed between us and Ark in ``find_lost``
LOST_PAGE_SIZE = 100
LOST_MAX_PAGES = 5
MESSAGE_LIMIT = 300

_STATES = {
    "queued": UpstreamState.QUEUED,
    "pending": UpstreamState.QUEUED,
    "running": UpstreamState.RUNNING,
    "processing": UpstreamState.RUNNING,
    "succeeded": UpstreamState.SUCCEEDED,
    "failed": UpstreamState.FAILED,
    "cancelled": UpstreamState.CANCELLED,
    "canceled": UpstreamState.CANCELLED,
    "expired": UpstreamState.EXPIRED,
}
_URL = re.compile(r"\b(?:https?|wss?|ftp|file)://\S+|\bdata:[\w.+-]+/[\w.+-]+[;,]\S*", re.I)
_PATH = re.compile(r"(?<![\w.:/])/(?:[\w.@+-]+/)+[\w.@+-]*")
_SPACE = re.compile(r"\s+")


class ArkProvider(HttpProvider):
    """One Ark endpoint (a region and an API key) as a ``reelgate.ports.Provider``."""

    kind = "ark"

    def __init__(
        self,
        name: str,
        config: ProviderConfig,
        api_key: str,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        super().__init__(name, config, api_key, transport=transport)
        self._secret = api_key  # only to take it out of messages; never logged

    async def submit(self, job: UpstreamJob) -> str:
        """Create the task; return Ark's id (``cgt-…``)."""
        response = await self.call("POST", TASKS, submit=True, json=self.request_body(job))
        if response.status_code >= 400:
            raise self._refusal(response)
        if response.status_code >= 300:
            raise UpstreamBusy(
                f"{self.name}: the provider answered {response.status_code} to a create",
                provider=self.name,
            )
        task_id = self.body(response, submit=True).get("id")
        if not isinstance(task_id, str) or not task_id:
            raise UpstreamUncertain(
                f"{self.name}: the provider accepted the task but sent no id", provider=self.name
            )
        return task_id

    def request_body(self, job: UpstreamJob) -> dict[str, Any]:
        """The JSON body of Ark's create call for ``job``."""
        content: list[dict[str, Any]] = [{"type": "text", "text": job.prompt}]
        image = job.image_url or _data_url(job.image, job.image_type)
        if image is not None:
            content.append(
                {"type": "image_url", "image_url": {"url": image}, "role": "first_frame"}
            )
        body: dict[str, Any] = {
            "model": job.model,
            "content": content,
            "duration": job.seconds,
            "ratio": job.size,
            "resolution": job.resolution,
        }
        if self.config.watermark is not None:
            body["watermark"] = self.config.watermark
        if job.callback_url:
            body["callback_url"] = job.callback_url
        return body

    async def get(self, upstream_id: str) -> UpstreamTask:
        """The task's state; ``UpstreamGone`` (``upstream_task_missing``) when Ark forgot it."""
        response = await self.call("GET", _task_path(upstream_id))
        if response.status_code == 404 or (
            response.status_code == 400 and "NotFound" in _error(response)[0]
        ):
            raise UpstreamGone(
                f"{self.name}: the provider has no task {upstream_id}",
                code="upstream_task_missing",
                provider=self.name,
            )
        if response.status_code != 200:
            code, _ = _error(response)
            raise UpstreamBusy(
                f"{self.name}: the provider answered {response.status_code} {code}".rstrip(),
                provider=self.name,
            )
        return self.read_task(self.body(response))

    def read_task(self, data: dict[str, Any]) -> UpstreamTask:
        """Our view of one task object of Ark's (a get's body, or an item of a list)."""
        status = str(data.get("status") or "").lower()
        state = _STATES.get(status)
        if state is None:
            raise UpstreamBusy(
                f"{self.name}: the provider sent an unknown task status {status[:40]!r}",
                provider=self.name,
            )
        usage = data.get("usage")
        tokens = None
        if isinstance(usage, dict):
            tokens = _int(usage.get("completion_tokens"))
            if tokens is None:
                tokens = _int(usage.get("total_tokens"))
        if state is UpstreamState.SUCCEEDED:
            content = data.get("content")
            url = content.get("video_url") if isinstance(content, dict) else None
            if not isinstance(url, str) or not url:
                raise UpstreamBusy(
                    f"{self.name}: the provider says succeeded but sent no video URL",
                    provider=self.name,
                )
            updated = _int(data.get("updated_at"))
            expires = float(updated + VIDEO_URL_TTL) if updated is not None else None
            return UpstreamTask(
                state, 100, video_url=url, video_expires_at=expires, usage_tokens=tokens
            )
        if state is UpstreamState.FAILED:
            error = data.get("error")
            code = message = ""
            if isinstance(error, dict):
                code = str(error.get("code") or "")
                message = str(error.get("message") or "")
            ours = _our_code(code, default="upstream_failed")
            return UpstreamTask(
                state,
                error_code=ours,
                error_message=self._safe(message) or _default_message(ours, code),
                usage_tokens=tokens,
            )
        if state is UpstreamState.EXPIRED:
            return UpstreamTask(
                state,
                error_code="upstream_expired",
                error_message="the provider gave up on the task before it ran (expired)",
            )
        return UpstreamTask(state, usage_tokens=tokens)

    async def download(
        self, upstream_id: str, task: UpstreamTask, dest: Path, max_bytes: int
    ) -> None:
        """Stream the video from its presigned URL (used as returned, sent without our key)."""
        if not task.video_url:
            raise UpstreamGone(
                f"{self.name}: task {upstream_id} has no video URL",
                code="upstream_video_unavailable",
                provider=self.name,
            )
        await self.stream(task.video_url, dest, max_bytes)

    async def cancel(self, upstream_id: str) -> None:
        """Cancel a queued task, or delete a finished task's record; a missing one is fine.

        Ark cannot stop a running task: that refusal is ``UpstreamRefused``
        (``upstream_not_cancellable``), and the task runs to its end at Ark.
        """
        response = await self.call("DELETE", _task_path(upstream_id))
        if response.status_code < 300 or response.status_code == 404:
            return
        code, message = _error(response)
        raise UpstreamRefused(
            self._safe(message) or f"the provider would not cancel the task ({code or 'refused'})",
            code="upstream_not_cancellable",
            provider=self.name,
        )

    async def find_lost(
        self, job: UpstreamJob, *, since: float, known: Collection[str]
    ) -> str | None:
        """Best effort: the one task of ``job.model`` created since ``since`` that nobody owns.

        Lists Ark's tasks of the model, newest first (at most a few pages of 100), and keeps
        those created at or after ``since`` (less a few seconds of clock skew) whose id is
        not in ``known`` and whose duration, ratio and resolution (where Ark reports them)
        match ``job``. Ark's list does not show the prompt, so this cannot prove the match:
        exactly one candidate is an answer; none, or a listing that Ark refuses (a 4xx),
        give None. Several candidates (submissions of the same shape whose answers are
        still in flight elsewhere) raise ``UpstreamBusy``, as a transient fault (429,
        5xx, no answer) does: the question is asked again later, once the other
        submitters have recorded their ids, and "not found" is never concluded from a
        failed or ambiguous call.
        """
        floor = since - LOST_SLACK
        candidates: set[str] = set()
        for page in range(1, LOST_MAX_PAGES + 1):
            params = {
                "page_num": page,
                "page_size": LOST_PAGE_SIZE,
                "filter.model": job.model,
            }
            response = await self.call("GET", TASKS, params=params)
            if response.status_code != 200:
                return None
            data = self.body(response)
            items = data.get("items")
            if not isinstance(items, list):
                return None
            older = False
            for item in items:
                if not isinstance(item, dict):
                    continue
                created = _int(item.get("created_at"))
                if created is None:
                    continue
                if created < floor:
                    older = True
                    continue
                task_id = item.get("id")
                if isinstance(task_id, str) and task_id not in known and _matches(item, job):
                    candidates.add(task_id)
            if older or len(items) < LOST_PAGE_SIZE:
                break
        if len(candidates) > 1:  # others' answers may be in flight: they tell later
            raise UpstreamBusy(
                f"{self.name}: {len(candidates)} unrecorded tasks match a lost submission",
                provider=self.name,
            )
        return candidates.pop() if candidates else None

    def _refusal(self, response: httpx.Response) -> UpstreamRefused | UpstreamBusy:
        """The domain error for a 4xx answer to a create (429 never reaches here)."""
        status = response.status_code
        code, message = _error(response)
        if status == 408:
            return UpstreamBusy(
                f"{self.name}: the provider timed out reading the request", provider=self.name
            )
        if status in (401, 403):
            return UpstreamRefused(
                f"the upstream provider refused our credentials or access ({code or status})",
                code="upstream_refused",
                provider=self.name,
            )
        ours = _our_code(code, default="upstream_refused")
        if status == 413:
            ours = "invalid_parameter"
        return UpstreamRefused(
            self._safe(message) or _default_message(ours, code or str(status)),
            code=ours,
            provider=self.name,
        )

    def _safe(self, message: str) -> str:
        """``message`` fit to show a client: no key, URL or path; one line, bounded."""
        if self._secret:
            message = message.replace(self._secret, "***")
        message = _URL.sub("<url>", message)
        message = _PATH.sub("<path>", message)
        message = _SPACE.sub(" ", message).strip()
        if len(message) > MESSAGE_LIMIT:
            message = message[: MESSAGE_LIMIT - 1].rstrip() + "…"
        return message


def _task_path(upstream_id: str) -> str:
    return f"{TASKS}/{quote(upstream_id, safe='')}"


def _error(response: httpx.Response) -> tuple[str, str]:
    """Ark's ``error.code`` and ``error.message`` in a failed answer ("" where absent)."""
    try:
        data = response.json()
    except ValueError:
        return "", ""
    error = data.get("error") if isinstance(data, dict) else None
    if not isinstance(error, dict):
        return "", ""
    return str(error.get("code") or ""), str(error.get("message") or "")


def _our_code(code: str, *, default: str) -> str:
    if "SensitiveContent" in code or "RiskDetection" in code:
        return "content_rejected"
    if code.startswith(("InvalidParameter", "MissingParameter", "InvalidArgument")):
        return "invalid_parameter"
    return default


def _default_message(ours: str, code: str) -> str:
    if ours == "content_rejected":
        return "the provider's content filter rejected the task"
    if ours == "invalid_parameter":
        return f"the provider refused a parameter of the task ({code})"
    return f"the provider refused the task ({code})" if code else "the provider refused the task"


def _matches(item: dict[str, Any], job: UpstreamJob) -> bool:
    """False only where Ark reports a setting that differs from the job's."""
    duration = _int(item.get("duration"))
    if duration is not None and duration != job.seconds:
        return False
    ratio = item.get("ratio")
    if isinstance(ratio, str) and ratio not in ("", "adaptive", job.size):
        return False
    resolution = item.get("resolution")
    return not (isinstance(resolution, str) and resolution and resolution != job.resolution)


def _int(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return None


def _data_url(image: bytes | None, image_type: str | None) -> str | None:
    if image is None:
        return None
    media = (image_type or _sniff(image)).lower()
    return f"data:{media};base64,{base64.b64encode(image).decode('ascii')}"


def _sniff(image: bytes) -> str:
    if image.startswith(b"\x89PNG"):
        return "image/png"
    if image.startswith(b"\xff\xd8"):
        return "image/jpeg"
    if image[:4] == b"RIFF" and image[8:12] == b"WEBP":
        return "image/webp"
    return "image/png"
