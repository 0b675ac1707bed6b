"""The OpenAI dialect: OpenAI's Videos API (``client.videos``) over reelgate's tasks.

The official ``openai`` SDK works unchanged with ``base_url="http://HOST:PORT/openai/v1"``
and a reelgate key:

=========================================  ==============================================
``POST   /openai/v1/videos``               create (multipart, form or JSON): a video
``GET    /openai/v1/videos/{id}``          the video, with ``openai-poll-after-ms``
``GET    /openai/v1/videos``               a cursor page: ``after``, ``limit``, ``order``
``DELETE /openai/v1/videos/{id}``          ``{"id", "object": "video.deleted", ...}``
``GET    /openai/v1/videos/{id}/content``  the MP4, or ``?variant=thumbnail`` (JPEG)
``GET    /openai/v1/models``               the model ids, aliases included
=========================================  ==============================================

The parser (``create_fields``) turns OpenAI's fields into reelgate's create; the
presenter (``present``) shows a stored task as OpenAI's video object and is pure, so
one task reads alike in every dialect. Errors are OpenAI's ``{"error": {"message",
"type", "param", "code"}}`` with OpenAI's status codes (``openai_answer``): an unknown
video is 404 here, where CometAPI's route answers 400. ``error_route`` answers every
route here, dependencies included, in that shape.
"""

from __future__ import annotations

import base64
import binascii
import logging
from collections.abc import Mapping
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response

from reelgate.api import content as content_route
from reelgate.api.auth import current_key
from reelgate.api.body import read_create_body
from reelgate.api.dialects import error_route
from reelgate.api.errors import domain_error, envelope
from reelgate.api.videos import current_owner, json_response
from reelgate.domain import errors as e
from reelgate.domain.listing import DEFAULT_LIMIT, MAX_LIMIT, ListQuery, Page
from reelgate.domain.polling import poll_after
from reelgate.domain.sizes import pixels
from reelgate.domain.status import Status
from reelgate.domain.task import ApiKey, Task
from reelgate.services.idempotency import CreateService
from reelgate.services.tasks import TaskService

log = logging.getLogger("reelgate.api")

PREFIX = "/openai/v1"
DEFAULT_MODEL = "sora-2"  # what OpenAI takes when no model is sent (an alias here)
DEFAULT_SECONDS = "4"  # OpenAI's defaults, not CometAPI's (5 seconds, 16:9)
DEFAULT_SIZE = "720x1280"
POLL_AFTER = "openai-poll-after-ms"
IMAGE_URL = "input_reference[image_url]"  # the SDK's form of {"image_url": …}
FILE_ID = "input_reference[file_id]"
LIST_PARAMS = ("after", "limit", "order")

STATUSES = {
    Status.SUBMITTED: "queued",
    Status.IN_PROGRESS: "in_progress",
    Status.SUCCESS: "completed",
    Status.FAILED: "failed",  # a cancelled task too: error.code "cancelled"
    Status.ERROR: "failed",
}

# class -> (HTTP status, OpenAI's error type); the most specific class wins (MRO order).
OPENAI_STATUS: dict[type[e.ReelgateError], tuple[int, str]] = {
    e.ReelgateError: (500, "server_error"),
    e.InvalidRequest: (400, "invalid_request_error"),
    e.TaskNotFound: (404, "invalid_request_error"),
    e.AuthenticationError: (401, "invalid_request_error"),
    e.Forbidden: (403, "invalid_request_error"),
    e.NotFound: (404, "invalid_request_error"),
    e.FilesExpired: (410, "invalid_request_error"),
    e.PayloadTooLarge: (413, "invalid_request_error"),
    e.UnsupportedMediaType: (415, "invalid_request_error"),
    e.RateLimited: (429, "rate_limit_error"),
    e.Conflict: (409, "invalid_request_error"),
    e.Unavailable: (503, "server_error"),
}
# reelgate's error codes, as OpenAI words them where it has a word
_CODES = {
    "InvalidParameter": "invalid_value",
    "MissingParameter": "missing_required_parameter",
    "task_not_exist": "video_not_found",
}


def present(task: Task, now: float, retain: float | None = None) -> dict[str, Any]:
    """``task`` as OpenAI's video object (``seconds`` and ``size`` as strings).

    ``expires_at`` is when a finished video's files are deleted (``retain`` seconds
    after it completed: ``REELGATE_RETAIN_OUTPUTS``), or were; null while they are kept
    for ever, and before the video is done.
    """
    error = None
    if task.error_code is not None:
        error = {"code": task.error_code, "message": task.error_message or ""}
    return {
        "id": task.id,
        "object": "video",
        "model": task.spec.model,
        "status": STATUSES[task.status],
        "progress": task.shown_progress(now),
        "created_at": int(task.created_at),
        "completed_at": None if task.completed_at is None else int(task.completed_at),
        "expires_at": _expires_at(task, retain),
        "error": error,
        "prompt": task.spec.prompt,
        "seconds": str(task.spec.seconds),
        "size": pixels(task.spec.size, task.spec.resolution),
        "remixed_from_video_id": None,
    }


def _expires_at(task: Task, retain: float | None) -> int | None:
    if task.status is not Status.SUCCESS or task.completed_at is None:
        return None
    if task.files_expired_at is not None:
        return int(task.files_expired_at)
    return None if retain is None else int(task.completed_at + retain)


def present_page(page: Page, now: float, retain: float | None = None) -> dict[str, Any]:
    """A page of tasks as OpenAI's list object (``after=last_id`` asks for the next)."""
    data = [present(task, now, retain) for task in page.tasks]
    return {
        "object": "list",
        "data": data,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
        "has_more": page.has_more,
    }


def create_fields(
    fields: Mapping[str, object], aliases: Mapping[str, str]
) -> tuple[dict[str, object], bytes | None]:
    """OpenAI's create fields as reelgate's, and the image of ``input_reference[image_url]``.

    The model may be an alias (``sora-2``: ``aliases``); ``seconds`` and ``size`` take
    OpenAI's defaults (4 and ``720x1280``); sizes in pixels map as CometAPI's do.
    """
    ours = dict(fields)
    image = None
    if FILE_ID in ours:
        raise e.InvalidParameter(
            "input_reference.file_id is not supported here: upload the image as the "
            "input_reference file, or send input_reference.image_url as a data URL",
            param="input_reference",
        )
    if IMAGE_URL in ours:
        image = _data_url(ours.pop(IMAGE_URL))
    model = ours.get("model") or DEFAULT_MODEL
    if isinstance(model, str):
        model = aliases.get(model.strip(), model)
    ours["model"] = model
    for name, default in (("seconds", DEFAULT_SECONDS), ("size", DEFAULT_SIZE)):
        if ours.get(name) in (None, ""):
            ours[name] = default
    return ours, image


def list_query(params: Mapping[str, list[str]]) -> ListQuery:
    """OpenAI's list parameters (``after``, ``limit``, ``order``) as a ``ListQuery``."""
    values: dict[str, str] = {}
    for name, given in params.items():
        if name not in LIST_PARAMS:
            raise e.InvalidParameter(
                f"unknown parameter {name[:40]!r}; a list takes after, limit and order",
                param=name,
            )
        if len(given) != 1:
            raise e.InvalidParameter(f"{name} may be given once", param=name)
        values[name] = given[0]
    limit = values.get("limit", str(DEFAULT_LIMIT)).strip()
    if not (
        limit.isascii() and limit.isdigit() and len(limit) <= 4 and 1 <= int(limit) <= MAX_LIMIT
    ):
        raise e.InvalidParameter(
            f"limit must be an integer from 1 to {MAX_LIMIT}, got {limit[:40]!r}", param="limit"
        )
    order = values.get("order", "desc")
    if order not in ("asc", "desc"):
        raise e.InvalidParameter(f"order must be asc or desc, got {order[:40]!r}", param="order")
    after = values.get("after") or None
    return ListQuery(after=after, limit=int(limit), order="asc" if order == "asc" else "desc")


def openai_answer(exc: e.ReelgateError) -> tuple[int, str, str]:
    """The HTTP status, OpenAI's error type and code for ``exc``."""
    status, type_ = next(OPENAI_STATUS[cls] for cls in type(exc).__mro__ if cls in OPENAI_STATUS)
    return status, type_, _CODES.get(exc.code, exc.code)


def openai_error(request: Request, exc: e.ReelgateError) -> JSONResponse:
    """``exc`` as OpenAI's error answer; a 5xx as every route words it (no detail)."""
    status, type_, code = openai_answer(exc)
    if status >= 500:
        return domain_error(request, exc)
    message = exc.message
    if isinstance(exc, e.TaskNotFound):
        message = "no video with this id (or it belongs to another key's owner)"
    headers = {"Retry-After": str(exc.retry_after)} if isinstance(exc, e.RateLimited) else None
    return envelope(status, message, type_=type_, code=code, param=exc.param, headers=headers)


router = APIRouter(prefix=PREFIX, route_class=error_route(openai_error), tags=["OpenAI dialect"])


@router.post("/videos", summary="OpenAI: create a video")
async def create_video(request: Request, api_key: ApiKey = Depends(current_key)) -> Response:
    creates: CreateService = request.app.state.creates
    fields, image = await read_create_body(request)
    fields, linked = create_fields(fields, request.app.state.settings.openai_aliases)
    if image is not None and linked is not None:
        raise e.InvalidParameter("send one input_reference, not two", param="input_reference")
    key = request.headers.get("idempotency-key")  # as POST /v1/videos takes it
    try:
        created = await creates.create(
            api_key.owner, fields, image or linked, idempotency_key=key, limits=api_key.limits
        )
    except e.InvalidParameter as exc:
        if exc.param != "model":
            raise
        aliases = ", ".join(request.app.state.settings.openai_aliases) or "none"
        raise e.InvalidParameter(f"{exc.message} (aliases: {aliases})", param="model") from exc
    if created.replayed:  # the first request's task, again
        response = _video(created.task, request)
        response.headers["Idempotent-Replayed"] = "true"
        return response
    request.app.state.wake_peers()  # the worker may run in another API process
    return _video(created.task, request)


@router.get("/videos/{video_id}", summary="OpenAI: retrieve a video")
async def retrieve_video(
    video_id: str, request: Request, owner: str = Depends(current_owner)
) -> Response:
    tasks: TaskService = request.app.state.tasks
    return _video(await tasks.get(owner, video_id), request)


@router.get("/videos", summary="OpenAI: list videos, newest first, a page at a time")
async def list_videos(request: Request, owner: str = Depends(current_owner)) -> Response:
    tasks: TaskService = request.app.state.tasks
    params = request.query_params
    page = await tasks.list(owner, list_query({name: params.getlist(name) for name in params}))
    return json_response(present_page(page, tasks.now(), tasks.retain_outputs))


@router.delete("/videos/{video_id}", summary="OpenAI: delete a video (cancelled first)")
async def delete_video(
    video_id: str, request: Request, owner: str = Depends(current_owner)
) -> Response:
    tasks: TaskService = request.app.state.tasks
    await tasks.delete(owner, video_id)
    return json_response({"id": video_id, "object": "video.deleted", "deleted": True})


@router.get("/videos/{video_id}/content", summary="OpenAI: download a video or its thumbnail")
@router.head("/videos/{video_id}/content", summary="OpenAI: a download's headers only")
async def download_content(
    video_id: str, request: Request, owner: str = Depends(current_owner)
) -> Response:
    return await content_route.content(video_id, request, owner)


@router.get("/models", summary="OpenAI: list the model ids, aliases included")
async def list_models(request: Request, owner: str = Depends(current_owner)) -> Response:
    tasks: TaskService = request.app.state.tasks
    aliases: dict[str, str] = request.app.state.settings.openai_aliases
    ids = [spec.id for spec in tasks.catalog] + [name for name in aliases if name]
    data = [{"id": id_, "object": "model", "created": 0, "owned_by": "reelgate"} for id_ in ids]
    return json_response({"object": "list", "data": data})


def _video(task: Task, request: Request) -> Response:
    """The video object, with the polling advice while the task runs."""
    tasks: TaskService = request.app.state.tasks
    now = tasks.now()
    response = json_response(present(task, now, tasks.retain_outputs))
    wait = poll_after(task, now, interval=request.app.state.settings.poll_after)
    if wait is not None:
        response.headers[POLL_AFTER] = str(round(wait * 1000))
    return response


def _data_url(value: object) -> bytes:
    """The image of a ``data:image/…;base64,…`` URL; other URLs are refused (no fetching)."""
    head, sep, payload = value.partition(",") if isinstance(value, str) else ("", "", "")
    if not sep or not head.startswith("data:image/") or not head.endswith(";base64"):
        raise e.InvalidParameter(
            "input_reference.image_url must be a data:image/…;base64,… URL (no URL is fetched)",
            param="input_reference",
        )
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise e.InvalidParameter(
            "input_reference is not valid base64", param="input_reference"
        ) from exc
