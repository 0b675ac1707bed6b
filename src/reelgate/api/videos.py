"""The task routes of the contract: create and retrieve, plus the model list.

``GET /v1/videos/{id}``, the route clients poll, is also served by ``Retrieve``, a
bare ASGI app that the application calls before FastAPI's stack (routing, dependency
injection, its middleware): the same answers, byte for byte, at several times the
rate. The FastAPI route stays for the schema (``/openapi.json``) and as the reference.
"""

from __future__ import annotations

import json
from json.encoder import encode_basestring_ascii
from typing import Any

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import Response
from starlette.types import Message, Receive, Scope, Send

from reelgate.api.auth import current_key
from reelgate.api.body import read_create_body
from reelgate.api.errors import domain_error, unexpected_error
from reelgate.api.middleware import REQUEST_ID, log_unexpected, new_request_id, sane_request_id
from reelgate.config import Config
from reelgate.domain.catalog import DEFAULT_SECONDS, SIZES
from reelgate.domain.errors import ReelgateError
from reelgate.domain.status import Status
from reelgate.domain.task import ApiKey, Task
from reelgate.services.idempotency import CreateService
from reelgate.services.keys import KeyService
from reelgate.services.tasks import TaskService

router = APIRouter()

RETRIEVE_PREFIX = "/v1/videos/"
IDEMPOTENCY_HEADER = "idempotency-key"
_ENCODER = json.JSONEncoder(separators=(",", ":"))  # what json.dumps makes per call, made once
_string = encode_basestring_ascii  # a str as JSON, exactly as json.dumps writes it
_AUTHORIZATION = b"authorization"
_JSON = (b"content-type", b"application/json")


def encode(body: dict[str, Any]) -> bytes:
    """``body`` as compact JSON bytes (ASCII, as ``json.dumps`` writes it)."""
    return _ENCODER.encode(body).encode()


def json_response(body: dict[str, Any], status_code: int = 200) -> Response:
    """A compact JSON response, without a validation pass over the body."""
    return Response(encode(body), status_code, media_type="application/json")


async def current_owner(request: Request) -> str:
    """The owner of the request's bearer key (401 otherwise)."""
    keys: KeyService = request.app.state.keys
    return await keys.authenticate(request.headers.get("authorization"))


def video_body(task: Task, tasks: TaskService) -> dict[str, Any]:
    """A task as the contract's video object."""
    body: dict[str, Any] = {
        "id": task.id,
        "task_id": task.id,
        "object": "video",
        "model": task.spec.model,
        "status": task.status.value,
        "progress": task.shown_progress(tasks.now()),
        "created_at": int(task.created_at),
        "completed_at": None if task.completed_at is None else int(task.completed_at),
    }
    link = tasks.link(task)
    if link is not None:
        body["video_url"] = link.url
        body["expires_at"] = link.expires_at
    elif task.files_expired_at is not None and task.status is Status.SUCCESS:
        body["files_expired_at"] = int(task.files_expired_at)  # retention deleted the video
    if task.error_code is not None:
        body["error"] = {"code": task.error_code, "message": task.error_message or ""}
    return body


def video_json(task: Task, tasks: TaskService) -> bytes:
    """``encode(video_body(task, tasks))``, written out directly: the poll's hot path.

    The same bytes (tests/firsthour/test_read_path.py compares them over every status,
    error and link case), at about half the cost of building the dict and encoding it.
    """
    id_ = _string(task.id)
    completed = task.completed_at
    text = (
        f'{{"id":{id_},"task_id":{id_},"object":"video","model":{_string(task.spec.model)},'
        f'"status":{_string(task.status.value)},'
        f'"progress":{_number(task.shown_progress(tasks.now()))},'
        f'"created_at":{int(task.created_at)},'
        f'"completed_at":{"null" if completed is None else int(completed)}'
    )
    link = tasks.link(task)
    if link is not None:
        text += f',"video_url":{_string(link.url)},"expires_at":{_number(link.expires_at)}'
    elif task.files_expired_at is not None and task.status is Status.SUCCESS:
        text += f',"files_expired_at":{int(task.files_expired_at)}'
    if task.error_code is not None:
        code, message = _string(task.error_code), _string(task.error_message or "")
        text += f',"error":{{"code":{code},"message":{message}}}'
    return (text + "}").encode()


def _number(value: object) -> str:
    return str(value) if type(value) is int else _ENCODER.encode(value)


@router.post("/v1/videos", summary="Create a video task")
async def create_video(
    request: Request,
    key: ApiKey = Depends(current_key),
    idempotency_key: str | None = Header(
        None,
        alias="Idempotency-Key",
        description="The same key with the same request answers with the same task for "
        "24 hours; with another request: 409 idempotency_key_reused.",
    ),
) -> Response:
    tasks: TaskService = request.app.state.tasks
    creates: CreateService = request.app.state.creates
    fields, image = await read_create_body(request)
    created = await creates.create(
        key.owner,
        fields,
        image,
        idempotency_key=request.headers.get(IDEMPOTENCY_HEADER),  # as sent (also when empty)
        limits=key.limits,
    )
    if created.replayed:  # the first request's answer, again (docs/api.md, Idempotency-Key)
        response = json_response(created_body(created.task))
        response.headers["Idempotent-Replayed"] = "true"
        return response
    request.app.state.wake_peers()  # the worker may run in another API process
    body = video_body(created.task, tasks)
    del body["completed_at"]
    return json_response(body)


def created_body(task: Task) -> dict[str, Any]:
    """The answer a create gave for ``task``: queued, at progress 0."""
    return {
        "id": task.id,
        "task_id": task.id,
        "object": "video",
        "model": task.spec.model,
        "status": Status.SUBMITTED.value,
        "progress": 0,
        "created_at": int(task.created_at),
    }


@router.get("/v1/videos/{task_id}", summary="Retrieve a video task")
async def retrieve_video(
    task_id: str,
    request: Request,
    owner: str = Depends(current_owner),
    wait: str | None = Query(
        None, description="long-poll: answer once the task changes, or after this many seconds"
    ),
) -> Response:
    tasks: TaskService = request.app.state.tasks
    if wait is not None:
        from reelgate.api.events import long_poll  # it builds on this module

        return await long_poll(request, owner, task_id, wait)
    return json_response(video_body(await tasks.get(owner, task_id), tasks))


def retrieve_id(scope: Scope) -> str | None:
    """The task id of a ``GET /v1/videos/{id}`` that ``Retrieve`` answers, else None.

    The same paths as the route's pattern (``[^/]+`` after the prefix, on the decoded
    path); HEAD, other methods and a mounted root path go through FastAPI.
    """
    if scope["method"] != "GET" or scope.get("root_path"):
        return None
    path: str = scope["path"]
    if not path.startswith(RETRIEVE_PREFIX):
        return None
    task_id = path[len(RETRIEVE_PREFIX) :]
    if not task_id or "/" in task_id:
        return None
    query: bytes = scope.get("query_string", b"")
    if query and _WAIT in query and _long_poll(query):
        return None  # ``?wait=N``: the long-poll, behind FastAPI
    return task_id


_WAIT = b"wait"


def _long_poll(query: bytes) -> bool:
    return any(part.split(b"=", 1)[0] == _WAIT for part in query.split(b"&"))


class Retrieve:
    """``GET /v1/videos/{id}`` as a bare ASGI app: auth, one store read, the video body.

    Answers exactly as ``retrieve_video`` does behind FastAPI and ``RequestId``: the
    same status, headers and body, the request id echoed (or made), domain errors in
    the envelope through the same handler, and an unexpected exception as the logged
    500 that names the request id.
    """

    def __init__(self, keys: KeyService, tasks: TaskService) -> None:
        self.keys = keys
        self.tasks = tasks

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        task_id = scope["path"][len(RETRIEVE_PREFIX) :]
        authorization = None
        request_id = None
        for name, value in scope["headers"]:  # the first of each, as Starlette reads them
            if name == _AUTHORIZATION:
                if authorization is None:
                    authorization = value.decode("latin-1")
            elif name == REQUEST_ID and request_id is None:
                request_id = sane_request_id(value)
        request_id = request_id or new_request_id()
        id_header = (REQUEST_ID, request_id.encode("latin-1"))
        keys, tasks = self.keys, self.tasks
        try:
            owner = keys.cached_owner(authorization) or await keys.authenticate(authorization)
            body = video_json(await tasks.get(owner, task_id), tasks)
        except ReelgateError as exc:
            scope.setdefault("state", {})["request_id"] = request_id  # for a 5xx's message
            response = domain_error(Request(scope, receive), exc)
        except Exception:
            log_unexpected(scope, request_id)
            response = unexpected_error(request_id)
        else:
            start: Message = {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-length", b"%d" % len(body)), _JSON, id_header],
            }
            await send(start)
            await send({"type": "http.response.body", "body": body})
            return
        response.raw_headers.append(id_header)
        await response(scope, receive, send)


@router.get("/v1/models", summary="List the models and their limits")
async def list_models(request: Request, owner: str = Depends(current_owner)) -> Response:
    tasks: TaskService = request.app.state.tasks
    renderers = request.app.state.renderers
    config: Config = request.app.state.config
    data = [
        {
            "id": spec.id,
            "object": "model",
            "owned_by": "reelgate",
            "description": spec.description,
            "renderer": renderers[spec.id].name if spec.id in renderers else "remote",
            "routes": _routes(config, spec.id),
            "seconds": {
                "min": spec.min_seconds,
                "max": spec.max_seconds,
                "default": DEFAULT_SECONDS,
            },
            "resolutions": list(spec.resolutions),
            "sizes": list(SIZES),
            "image_input": spec.image_input,
        }
        for spec in tasks.catalog
    ]
    return json_response({"object": "list", "data": data})


def _routes(config: Config, model: str) -> list[dict[str, Any]]:
    """The providers that serve ``model``, in fallback order (empty: a local renderer)."""
    return [
        {
            "provider": route.provider,
            "kind": config.providers[route.provider].kind,
            "region": config.providers[route.provider].region or None,
            "upstream_model": route.model or model,
        }
        for route in config.routes.get(model, [])
        if config.providers[route.provider].kind != "preview"
    ]
