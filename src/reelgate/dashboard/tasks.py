"""The dashboard's task pages: the list with the create form, one task, its actions.

Streams and files go under the session cookie (a browser's ``EventSource`` and
``<video>`` cannot send an ``Authorization`` header) through the API's own handlers
(``api.events.stream_response``, ``api.content.content_response``), so they answer
exactly what ``/v1/videos/{id}/events`` and ``/content`` answer for the same owner.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response, StreamingResponse

from reelgate.api.content import content_response
from reelgate.api.events import HEADERS, frames, open_stream, stream_response
from reelgate.dashboard.forms import checked_form, image, text
from reelgate.dashboard.session import PATH
from reelgate.dashboard.signin import current, error_page, page, shown, status_of, to_signin
from reelgate.domain.catalog import DEFAULT_RESOLUTION, DEFAULT_SECONDS, DEFAULT_SIZE, SIZES
from reelgate.domain.errors import (
    AuthenticationError,
    InvalidParameter,
    NotFound,
    RateLimited,
    ReelgateError,
    TaskNotFound,
)
from reelgate.domain.listing import MAX_LIMIT, parse_list_query
from reelgate.domain.request import check_task_id
from reelgate.domain.status import Status
from reelgate.ports import TaskStore
from reelgate.services.idempotency import CreateService
from reelgate.services.tasks import TaskService

router = APIRouter(prefix=PATH, include_in_schema=False)

PAGE_SIZE = 20
CREATE_FIELDS = ("model", "prompt", "seconds", "size", "resolution")
STATUSES = [status.value for status in Status]


def models(tasks: TaskService) -> list[dict[str, Any]]:
    """The catalog as the create form shows it: each model's limits."""
    return [
        {
            "id": spec.id,
            "description": spec.description,
            "min_seconds": spec.min_seconds,
            "max_seconds": spec.max_seconds,
            "resolutions": list(spec.resolutions),
            "image_input": spec.image_input,
        }
        for spec in tasks.catalog
    ]


@router.get("/tasks")
async def task_list(request: Request) -> Response:
    session = await current(request)
    if session is None:
        return to_signin(request)
    return await _list_page(request, session, {}, None, 200)


async def _list_page(
    request: Request,
    session: Any,
    values: dict[str, str],
    error: ReelgateError | None,
    status_code: int,
) -> Response:
    tasks: TaskService = request.app.state.tasks
    params = request.query_params
    chosen = {name: params.get(name, "") for name in ("status", "model", "after")}
    query_params = {name: [value] for name, value in chosen.items() if value}
    query_params["limit"] = [str(PAGE_SIZE)]
    listing_error = None
    try:
        listed = await tasks.list(session.owner, parse_list_query(query_params))
        rows, has_more = listed.tasks, listed.has_more
    except ReelgateError as exc:
        listing_error, rows, has_more = shown(request, exc), [], False
    catalog = models(tasks)
    first = catalog[0] if catalog else None
    form = {
        "model": first["id"] if first else "",
        "prompt": "",
        "seconds": str(DEFAULT_SECONDS),
        "size": DEFAULT_SIZE,
        "resolution": DEFAULT_RESOLUTION,
        **values,
    }
    next_query = None
    if has_more and rows:
        nxt = {name: value for name, value in chosen.items() if value and name != "after"}
        next_query = {**nxt, "after": rows[-1].id}
    now = tasks.now()
    context = {
        "tasks": [(task, task.shown_progress(now)) for task in rows],
        "live": [task.id for task in rows if not task.terminal][:MAX_LIMIT],
        "models": catalog,
        "sizes": SIZES,
        "statuses": STATUSES,
        "chosen": chosen,
        "form": form,
        "error": None if error is None else shown(request, error),
        "deleted": request.query_params.get("deleted"),
        "listing_error": listing_error,
        "next_query": next_query,
    }
    return page(request, session, "tasks.html", context, status_code)


@router.post("/tasks")
async def create(request: Request) -> Response:
    session = await current(request)
    if session is None:
        return to_signin(request)
    values: dict[str, str] = {}
    try:
        form = await checked_form(request, session, max_files=1)
        values = {name: text(form, name) for name in CREATE_FIELDS}
        fields = {name: value for name, value in values.items() if value != ""}
        creates: CreateService = request.app.state.creates
        created = await creates.create(
            session.owner, fields, await image(form), limits=session.key.limits
        )
    except ReelgateError as exc:  # shown above the form, which keeps what was typed
        response = await _list_page(request, session, values, exc, status_of(exc))
        if isinstance(exc, RateLimited):
            response.headers["Retry-After"] = str(exc.retry_after)
        return response
    request.app.state.wake_peers()  # the worker may run in another API process
    return RedirectResponse(f"{PATH}/tasks/{created.task.id}", status_code=303)


@router.get("/tasks/{task_id}")
async def task_page(task_id: str, request: Request) -> Response:
    session = await current(request)
    if session is None:
        return to_signin(request)
    tasks: TaskService = request.app.state.tasks
    store: TaskStore = request.app.state.store
    try:
        task = await tasks.get(session.owner, task_id)
        events = await store.list_events(task.id)
    except ReelgateError as exc:
        return error_page(request, session, exc)
    context = {
        "task": task,
        "progress": task.shown_progress(tasks.now()),
        "events": events,
        "success": task.status is Status.SUCCESS and task.output_key is not None,
        "cancelled": request.query_params.get("cancelled") == "1",
    }
    return page(request, session, "task.html", context)


@router.post("/tasks/{task_id}/cancel")
async def cancel(task_id: str, request: Request) -> Response:
    session = await current(request)
    if session is None:
        return to_signin(request)
    tasks: TaskService = request.app.state.tasks
    try:
        await checked_form(request, session)
        task = await tasks.cancel(session.owner, task_id)
    except ReelgateError as exc:
        return error_page(request, session, exc)
    return RedirectResponse(f"{PATH}/tasks/{task.id}?cancelled=1", status_code=303)


@router.post("/tasks/{task_id}/delete")
async def delete(task_id: str, request: Request) -> Response:
    session = await current(request)
    if session is None:
        return to_signin(request)
    tasks: TaskService = request.app.state.tasks
    try:
        await checked_form(request, session)
        await tasks.delete(session.owner, task_id)
    except ReelgateError as exc:
        return error_page(request, session, exc)
    return RedirectResponse(f"{PATH}/tasks?deleted={task_id}", status_code=303)


async def _owner(request: Request) -> str:
    session = await current(request)
    if session is None:
        raise AuthenticationError("sign in to the dashboard first")
    return session.owner


@router.get("/tasks/{task_id}/content")
async def content(task_id: str, request: Request) -> Response:
    """The task's video (or ``?variant=thumbnail``), as ``/v1/videos/{id}/content``."""
    variant = request.query_params.get("variant", "video")
    owner = await _owner(request)
    try:
        return await content_response(request, owner, task_id, variant)
    except TaskNotFound:
        raise NotFound("no such task") from None


@router.get("/tasks/{task_id}/events")
async def events(task_id: str, request: Request) -> Response:
    """The task's server-sent events, as ``/v1/videos/{id}/events``."""
    owner = await _owner(request)
    try:
        return await stream_response(request, owner, task_id)
    except TaskNotFound:
        raise NotFound("no such task") from None


@router.get("/events")
async def list_events(request: Request) -> Response:
    """The events of several tasks (``?task=<id>`` each) in one stream, for the list page.

    Each task's stream starts with its current state (a reconnection too); the data
    carries the task's id. When every task's stream ended, ``event: end`` says so.
    """
    owner = await _owner(request)
    ids = list(dict.fromkeys(request.query_params.getlist("task")))
    if not 1 <= len(ids) <= MAX_LIMIT:
        raise InvalidParameter(f"name 1 to {MAX_LIMIT} tasks (task=<id>)", param="task")
    streams = [frames(open_stream(request, owner, check_task_id(id_)), None) for id_ in ids]
    return StreamingResponse(_merged(streams), media_type="text/event-stream", headers=HEADERS)


async def _merged(streams: list[AsyncIterator[bytes]]) -> AsyncIterator[bytes]:
    queue: asyncio.Queue[bytes | None] = asyncio.Queue()

    async def pump(stream: AsyncIterator[bytes]) -> None:
        try:
            async for frame in stream:
                await queue.put(frame)
        finally:
            await queue.put(None)

    pumps = [asyncio.create_task(pump(stream)) for stream in streams]
    running = len(pumps)
    try:
        while running:
            frame = await queue.get()
            if frame is None:
                running -= 1
            else:
                yield frame
        yield b"event: end\ndata: {}\n\n"
    finally:
        for task in pumps:
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*pumps, return_exceptions=True)
