"""The task routes of the contract: create and retrieve, plus the model list.

``GET /v1/videos/{id}``, the route clients poll, is also served by ``Retrieve``, a
bare ASGI app that the application calls before FastAPI's stack (routing, dependency
injection, its middleware): the same answers, bytes for bytes, at several times the
rate. The FastAPI route stays for the schema (``/openapi.json``) and as the reference.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from starlette.types import Message, Receive, Scope, Send

from reelgate.api.body import read_create_body
from reelgate.api.errors import domain_error
from reelgate.config import Config
from reelgate.domain.catalog import DEFAULT_SECONDS, SIZES
from reelgate.domain.errors import ReelgateError
from reelgate.domain.task import Task
from reelgate.services.keys import KeyService
from reelgate.services.tasks import TaskService

router = APIRouter()

RETRIEVE_PREFIX = "/v1/videos/"
_ENCODER = json.JSONEncoder(separators=(",", ":"))  # what json.dumps makes per call, made once
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
    if task.error_code is not None:
        body["error"] = {"code": task.error_code, "message": task.error_message or ""}
    return body


@router.post("/v1/videos", summary="Create a video task")
async def create_video(request: Request, owner: str = Depends(current_owner)) -> Response:
    tasks: TaskService = request.app.state.tasks
    fields, image = await read_create_body(request)
    task = await tasks.create(owner, fields, image)
    body = video_body(task, tasks)
    del body["completed_at"]
    return json_response(body)


@router.get("/v1/videos/{task_id}", summary="Retrieve a video task")
async def retrieve_video(
    task_id: str, request: Request, owner: str = Depends(current_owner)
) -> Response:
    tasks: TaskService = request.app.state.tasks
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
    return task_id


class Retrieve:
    """``GET /v1/videos/{id}`` as a bare ASGI app: auth, one store read, the video body.

    Answers exactly as ``retrieve_video`` does behind FastAPI (same status, headers and
    body; domain errors in the envelope through the same handler). It expects
    ``RequestId`` around it, which adds the request id and turns an unexpected
    exception into the 500 envelope.
    """

    def __init__(self, keys: KeyService, tasks: TaskService) -> None:
        self.keys = keys
        self.tasks = tasks

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        task_id = scope["path"][len(RETRIEVE_PREFIX) :]
        authorization = None
        for name, value in scope["headers"]:
            if name == _AUTHORIZATION:
                authorization = value.decode("latin-1")
                break
        tasks = self.tasks
        try:
            owner = await self.keys.authenticate(authorization)
            task = await tasks.get(owner, task_id)
        except ReelgateError as exc:
            await domain_error(Request(scope, receive), exc)(scope, receive, send)
            return
        body = encode(video_body(task, tasks))
        start: Message = {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-length", b"%d" % len(body)), _JSON],
        }
        await send(start)
        await send({"type": "http.response.body", "body": body})


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
