"""The Ark dialect: BytePlus ModelArk's content-generation task API over reelgate's tasks.

Ark's official SDK (``byteplus-python-sdk-v2[ark]``, tested; Volcengine's has the same
task API) works with ``base_url="http://HOST:PORT/api/v3"`` and a reelgate key:

======================================================  ==================================
``POST   /api/v3/contents/generations/tasks``           create: ``{"id": "task_…"}``
``GET    /api/v3/contents/generations/tasks/{id}``      the task in Ark's shape
``GET    /api/v3/contents/generations/tasks``           ``{"items", "total"}``, newest first
``DELETE /api/v3/contents/generations/tasks/{id}``      cancel an unfinished task, or
                                                        delete a finished one: ``{}``
======================================================  ==================================

Errors are Ark's ``{"error": {"code", "message", "param", "type"}}`` with Ark's status
codes (``ARK_STATUS``): every route here answers through ``error_route``, which turns the
domain's errors into that shape. The parsing and the task's shape are pure and live in
``ark_create`` and ``ark_present``.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response

from reelgate.api.auth import current_key
from reelgate.api.dialects import error_route
from reelgate.api.dialects.ark_create import UNKNOWN_MODEL, parse_create
from reelgate.api.dialects.ark_present import STATUSES, ArkListQuery, listed, parse_list, present
from reelgate.api.videos import IDEMPOTENCY_HEADER, current_owner, json_response
from reelgate.domain import errors as e
from reelgate.domain.catalog import SIZES
from reelgate.domain.listing import MAX_LIMIT, ListQuery
from reelgate.domain.status import Status
from reelgate.domain.task import ApiKey, Task
from reelgate.services.idempotency import CreateService
from reelgate.services.tasks import TaskService

log = logging.getLogger("reelgate.api")

PREFIX = "/api/v3/contents/generations/tasks"
WALKS = 3  # a list read again from the start when a task it paged by was deleted

# class -> (HTTP status, Ark's code); the most specific class wins (MRO order).
ARK_STATUS: dict[type[e.ReelgateError], tuple[int, str]] = {
    e.ReelgateError: (500, "InternalServiceError"),
    e.InvalidRequest: (400, "InvalidParameter"),
    e.InvalidParameter: (400, "InvalidParameter"),
    e.MissingParameter: (400, "MissingParameter"),
    e.TaskNotFound: (404, "ResourceNotFound"),
    e.AuthenticationError: (401, "AuthenticationError"),
    e.Forbidden: (403, "AccessDenied"),
    e.NotFound: (404, "ResourceNotFound"),
    e.FilesExpired: (410, "ResourceNotFound"),
    e.PayloadTooLarge: (413, "RequestEntityTooLarge"),
    e.UnsupportedMediaType: (415, "UnsupportedMediaType"),
    e.RateLimited: (429, "RateLimitExceeded"),
    e.Conflict: (409, "OperationDenied"),
    e.Unavailable: (503, "ServiceUnavailable"),
    e.UpstreamBusy: (503, "ServiceUnavailable"),
}
_TYPES = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    409: "Conflict",
    410: "Gone",
    413: "RequestEntityTooLarge",
    415: "UnsupportedMediaType",
    429: "TooManyRequests",
    500: "InternalServiceError",
    503: "ServiceUnavailable",
}
# reelgate's names of a create's fields, as Ark names them (errors of TaskService.create)
_PARAMS = {
    "input_reference": "content.image_url",
    "prompt": "content.text",
    "seconds": "duration",
    "size": "ratio",
}


def ark_answer(exc: e.ReelgateError) -> tuple[int, str]:
    """The HTTP status and Ark's error code for ``exc``."""
    if exc.code == UNKNOWN_MODEL:  # resolve_model's refusal: Ark answers 404
        return 404, UNKNOWN_MODEL
    return next(ARK_STATUS[cls] for cls in type(exc).__mro__ if cls in ARK_STATUS)


def ark_error(request: Request, exc: e.ReelgateError) -> JSONResponse:
    """``exc`` as Ark's error answer; a 5xx shows no detail, only the request id."""
    status, code = ark_answer(exc)
    request_id = request.scope.get("state", {}).get("request_id", "unknown")
    message = exc.message
    if status >= 500:
        log.warning("%s %s (request %s): %s", request.method, request.url.path, request_id, message)
        what = "The service is temporarily unavailable" if status == 503 else "Server error"
        message = f"{what}; retry later."
    param = _encodable(_PARAMS.get(exc.param or "", exc.param) or "")
    message = _encodable(f"{message} Request id: {request_id}")
    error = {"code": code, "message": message, "param": param}
    headers = {}
    if isinstance(exc, e.RateLimited):
        headers["Retry-After"] = str(exc.retry_after)
    elif status == 503:
        headers["Retry-After"] = "5"
    body = {"error": {**error, "type": _TYPES.get(status, "BadRequest")}}
    return JSONResponse(body, status_code=status, headers=headers)


router = APIRouter(route_class=error_route(ark_error), tags=["Ark dialect"])


# The OpenAPI description of the create and the list (the handlers read the request
# themselves); the answers and errors: api/openapi.py.
_CONTENT_ITEM = {
    "type": "object",
    "properties": {
        "type": {"type": "string", "enum": ["text", "image_url"]},
        "text": {"type": "string"},
        "image_url": {"type": "object", "properties": {"url": {"type": "string"}}},
        "role": {"type": "string", "enum": ["first_frame"]},
    },
    "required": ["type"],
}
_CREATE = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "model": {"type": "string"},
                        "content": {"type": "array", "items": _CONTENT_ITEM},
                        "ratio": {"type": "string", "enum": [*SIZES, "adaptive"]},
                        "duration": {"type": "integer"},
                        "resolution": {"type": "string", "enum": ["480p", "720p", "1080p"]},
                        "seed": {"type": "integer"},
                        "watermark": {"type": "boolean"},
                        "camera_fixed": {"type": "boolean"},
                        "callback_url": {"type": "string"},
                    },
                    "required": ["model", "content"],
                }
            }
        },
    }
}
_LIST = {
    "parameters": [
        {"name": name, "in": "query", "required": False, "schema": schema}
        for name, schema in (
            ("page_num", {"type": "integer", "minimum": 1, "maximum": 500}),
            ("page_size", {"type": "integer", "minimum": 1, "maximum": 500}),
            ("filter.status", {"type": "string", "enum": list(STATUSES)}),
            ("filter.model", {"type": "string"}),
            ("filter.task_ids", {"type": "array", "items": {"type": "string"}}),
        )
    ]
}


@router.post(
    PREFIX,
    summary="Ark: create a video generation task",
    openapi_extra=_CREATE,
)
async def create_task(request: Request, api_key: ApiKey = Depends(current_key)) -> Response:
    tasks: TaskService = request.app.state.tasks
    try:
        body = json.loads(await request.body(), object_pairs_hook=_unique_keys)
    except (ValueError, UnicodeDecodeError) as exc:
        raise e.InvalidRequest(f"The request body is not valid JSON: {exc}") from exc
    except RecursionError as exc:
        raise e.InvalidRequest("The request body is nested too deeply.") from exc
    parsed = parse_create(body, tasks.catalog)
    creates: CreateService = request.app.state.creates
    key = request.headers.get(IDEMPOTENCY_HEADER)
    created = await creates.create(
        api_key.owner, parsed.fields, parsed.image, idempotency_key=key, limits=api_key.limits
    )
    if not created.replayed:
        request.app.state.wake_peers()  # the worker may run in another API process
    return json_response({"id": created.task.id})


@router.get(PREFIX + "/{task_id}", summary="Ark: retrieve a video generation task")
async def get_task(task_id: str, request: Request, owner: str = Depends(current_owner)) -> Response:
    tasks: TaskService = request.app.state.tasks
    return json_response(_shown(await tasks.get(owner, task_id), tasks))


@router.get(PREFIX, summary="Ark: list video generation tasks", openapi_extra=_LIST)
async def list_tasks(request: Request, owner: str = Depends(current_owner)) -> Response:
    """A page by number of the caller's tasks, newest first, and how many match in all.

    Ark pages by number and counts the matches (``total``); reelgate's store pages by
    keyset. So a list walks the caller's matching tasks once, 100 a page on the index,
    keeping only the page asked for: its cost grows with the number of matches (about
    a millisecond per hundred), not with the page number alone.
    """
    tasks: TaskService = request.app.state.tasks
    params = {name: request.query_params.getlist(name) for name in request.query_params}
    query = parse_list(params, tasks.catalog)
    window, total = await _page(tasks, owner, query)
    return json_response({"items": [_shown(task, tasks) for task in window], "total": total})


@router.delete(
    PREFIX + "/{task_id}",
    summary="Ark: cancel or delete a video generation task",
)
async def delete_task(
    task_id: str, request: Request, owner: str = Depends(current_owner)
) -> Response:
    """Cancel a task that has not finished (it stays, ``cancelled``); delete a finished one.

    Ark cancels a queued task and deletes a finished one; it refuses a running or a
    cancelled task. Reelgate can stop a running render, so it cancels that too, and
    deletes a cancelled task (it has finished).
    """
    tasks: TaskService = request.app.state.tasks
    task = await tasks.get(owner, task_id)
    if not task.terminal:
        try:
            await tasks.cancel(owner, task_id)
        except e.TaskNotCancellable:  # it finished meanwhile: a finished task is deleted
            await tasks.delete(owner, task_id)
    else:
        await tasks.delete(owner, task_id)
    return json_response({})


def _shown(task: Task, tasks: TaskService) -> dict[str, Any]:
    link = tasks.link(task)
    return present(task, None if link is None else link.url)


async def _page(tasks: TaskService, owner: str, query: ArkListQuery) -> tuple[list[Task], int]:
    """The page ``query`` asks for of ``owner``'s matching tasks (newest first), and their count.

    Only the page is kept in memory, whatever the number of matches.
    """
    start = (query.page_num - 1) * query.page_size
    end = start + query.page_size
    if query.status == "expired" or query.service_tier not in (None, "default"):
        return [], 0  # reelgate's tasks never expire at a provider; all are "default"
    if query.task_ids:
        found = []
        for task_id in query.task_ids:
            try:
                found.append(await tasks.get(owner, task_id))
            except e.TaskNotFound:
                continue
        found = [task for task in found if listed(task, query)]
        found.sort(key=lambda task: (task.created_at, task.id), reverse=True)
        return found[start:end], len(found)
    for _ in range(WALKS):
        try:
            return await _walk(tasks, owner, query, start, end)
        except e.InvalidParameter as exc:  # the task a store page started after was deleted
            if exc.param != "after":
                raise
    raise e.Conflict("tasks were deleted while the list was read; retry the list")


async def _walk(
    tasks: TaskService, owner: str, query: ArkListQuery, start: int, end: int
) -> tuple[list[Task], int]:
    """Read every match, 100 a store page, keeping the ``start:end`` window and counting."""
    status = _INDEXED.get(query.status or "")
    window: list[Task] = []
    total = 0
    after = None
    while True:
        page = await tasks.list(
            owner, ListQuery(after=after, limit=MAX_LIMIT, status=status, model=query.model)
        )
        for task in page.tasks:
            if listed(task, query):
                if start <= total < end:
                    window.append(task)
                total += 1
        if not page.has_more or not page.tasks:
            return window, total
        after = page.tasks[-1].id


# Ark's status filters that one stored status narrows down (the rest filter in Python).
_INDEXED = {
    "queued": Status.SUBMITTED,
    "running": Status.IN_PROGRESS,
    "succeeded": Status.SUCCESS,
    "cancelled": Status.FAILED,
}


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    body = dict(pairs)
    if len(body) < len(pairs):
        twice = Counter(key for key, _ in pairs).most_common(1)[0][0][:100]
        raise e.InvalidParameter(f"The parameter `{twice}` is given twice.", param=twice)
    return body


def _encodable(text: str) -> str:
    """``text`` as UTF-8 can carry it (a lone surrogate a client sent is shown escaped)."""
    return text if text.isascii() else text.encode("utf-8", "backslashreplace").decode("utf-8")
