"""``/openapi.json``: the document FastAPI makes from the routes, completed.

The handlers read their requests and write their answers themselves (byte for byte
as the contract pins them), so FastAPI's own document lacks the create bodies, the
answers' shapes and the errors. ``complete`` adds them without touching a handler:

- every answer: the success body's schema (``api/schemas.py``) and every error status
  a route may answer, in its dialect's shape (CometAPI's envelope on ``/v1`` and the
  other routes, OpenAI's on ``/openai/v1``, Ark's on ``/api/v3``); FastAPI's 422 goes
  (a request the server refuses is a 400 here);
- the create bodies: multipart, urlencoded and JSON for ``POST /v1/videos`` and
  ``POST /openai/v1/videos`` (Ark's, JSON only, is declared on its route), with the
  catalog's model ids;
- the bearer scheme, on every route that depends on ``videos.current_owner`` or on
  ``auth.current_key``/``current_admin``: not on the probes, the signed ``/files``
  links or ``/v1/callbacks``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from fastapi.routing import APIRoute
from starlette.routing import BaseRoute

from reelgate.api import schemas as s
from reelgate.api.auth import current_admin, current_key
from reelgate.api.videos import current_owner

BEARER = "bearer"
SECURITY_SCHEME = {
    "type": "http",
    "scheme": "bearer",
    "description": "a reelgate API key: `Authorization: Bearer <key>`",
}

_REASONS = {
    206: "Partial content: the byte range a Range header asked for",
    302: "A redirect to a presigned URL of the object store",
    304: "Not modified: the If-None-Match header names the file's ETag",
    400: "A refused request (task_not_exist, InvalidParameter, MissingParameter, …)",
    401: "A missing, malformed or revoked bearer key",
    403: "The link is not signed, its signature does not match, or it has expired; on "
    "/v1/admin: the key is not an admin key (admin_required)",
    404: "Not found (and no route for a path)",
    409: "A conflict (idempotency key reused, task not cancellable, content not ready)",
    413: "The request body is too large",
    415: "An unsupported content type",
    416: "The Range lies outside the file",
    429: "A key's limit or the server's queue cap was reached (rate_limited, "
    "active_tasks_limit, daily_seconds_limit, queue_full); Retry-After says when to retry",
    500: "An unexpected error (the request id in the message)",
    503: "The database or the storage is unavailable (Retry-After)",
}


def _json(schema: str, description: str = "OK") -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": s.ref(schema)}}}


def _files(*media: str) -> dict[str, Any]:
    return {"description": "The file", "content": {m: {"schema": s.BINARY} for m in media}}


_CONTENT = _files("video/mp4", "image/jpeg")
_STORED = _files("video/mp4", "image/jpeg", "image/png", "image/webp", "application/octet-stream")
_CREATED = {
    **_json("CreatedVideo", "The task, stored and queued"),
    "headers": {
        "Idempotent-Replayed": {
            "description": "true when the answer is the first request's, replayed",
            "schema": {"type": "string", "enum": ["true"]},
        }
    },
}
_OPENAI_VIDEO = {
    **_json("OpenAIVideo"),
    "headers": {
        "openai-poll-after-ms": {
            "description": "while the video is unfinished: when to poll again",
            "schema": {"type": "string", "pattern": "^[0-9]+$"},
        }
    },
}

# (method, path) -> the success answers, and the error statuses besides 401 (a route that
# needs a key), 500 and 503 (every route but /healthz, which only answers 200 or 500).
OPERATIONS: dict[tuple[str, str], tuple[dict[str, Any], tuple[int, ...]]] = {
    ("post", "/v1/videos"): (_CREATED, (400, 409, 413, 415, 429)),
    ("get", "/v1/videos"): (_json("VideoList"), (400,)),
    ("get", "/v1/videos/{task_id}"): (_json("Video"), (400, 404)),
    ("delete", "/v1/videos/{task_id}"): (_json("VideoDeleted"), (400, 404, 409)),
    ("post", "/v1/videos/{task_id}/cancel"): (_json("Video"), (400, 404, 409)),
    ("get", "/v1/videos/{task_id}/events"): (
        {
            "description": "Server-sent events: one per change of the task",
            "content": {"text/event-stream": {"schema": s.STRING}},
        },
        (400, 404),
    ),
    ("get", "/v1/videos/{task_id}/content"): (_CONTENT, (206, 302, 304, 400, 404, 409, 416)),
    ("head", "/v1/videos/{task_id}/content"): (_CONTENT, (206, 302, 304, 400, 404, 409, 416)),
    ("get", "/v1/models"): (_json("ModelList"), ()),
    ("get", "/v1/webhooks"): (_json("WebhookEndpointList"), ()),
    ("post", "/v1/webhooks"): (
        _json("WebhookEndpoint", "The endpoint, with its secret (shown only here)"),
        (400, 413, 415),
    ),
    ("get", "/v1/webhooks/deliveries"): (_json("WebhookDeliveryList"), (400,)),
    ("get", "/v1/webhooks/callback-secret"): (_json("CallbackSecret"), ()),
    ("delete", "/v1/webhooks/{endpoint_id}"): (_json("WebhookEndpointDeleted"), (400, 404)),
    ("get", "/files/{key}"): (_STORED, (206, 403, 404, 416)),
    ("head", "/files/{key}"): (_STORED, (206, 403, 404, 416)),
    ("post", "/v1/callbacks/{task_id}"): (_json("CallbackReceived"), (403, 404)),
    ("get", "/healthz"): (_json("Health"), ()),
    ("get", "/readyz"): (_json("Ready"), ()),
    ("post", "/openai/v1/videos"): (_OPENAI_VIDEO, (400, 404, 409, 413, 415, 429)),
    ("get", "/openai/v1/videos"): (_json("OpenAIVideoList"), (400,)),
    ("get", "/openai/v1/videos/{video_id}"): (_OPENAI_VIDEO, (400, 404)),
    ("delete", "/openai/v1/videos/{video_id}"): (_json("OpenAIVideoDeleted"), (400, 404, 409)),
    ("get", "/openai/v1/videos/{video_id}/content"): (
        _CONTENT,
        (206, 302, 304, 400, 404, 409, 416),
    ),
    ("head", "/openai/v1/videos/{video_id}/content"): (
        _CONTENT,
        (206, 302, 304, 400, 404, 409, 416),
    ),
    ("get", "/openai/v1/models"): (_json("OpenAIModelList"), ()),
    ("post", "/api/v3/contents/generations/tasks"): (
        _json("ArkCreated"),
        (400, 404, 409, 413, 429),
    ),
    ("post", "/v1/admin/keys"): (
        _json("ApiKeyCreated", "The key, with its secret (shown only here)"),
        (400, 403, 413, 415),
    ),
    ("get", "/v1/admin/keys"): (_json("ApiKeyList"), (403,)),
    ("get", "/v1/admin/keys/{key_id}"): (_json("ApiKey"), (403, 404)),
    ("patch", "/v1/admin/keys/{key_id}"): (_json("ApiKey"), (400, 403, 404, 413, 415)),
    ("delete", "/v1/admin/keys/{key_id}"): (_json("ApiKey", "The key, revoked"), (403, 404)),
    ("get", "/v1/usage"): (_json("Usage"), (400,)),
    ("get", "/v1/admin/usage"): (_json("Usage"), (400, 403)),
    ("get", "/api/v3/contents/generations/tasks"): (_json("ArkTaskList"), (400, 409)),
    ("get", "/api/v3/contents/generations/tasks/{task_id}"): (_json("ArkTask"), (400, 404)),
    ("delete", "/api/v3/contents/generations/tasks/{task_id}"): (
        _json("ArkDeleted", "The task was cancelled, or deleted"),
        (400, 404, 409),
    ),
}

_OPENAI_LIST = [
    {"name": "after", "in": "query", "required": False, "schema": s.STRING},
    {
        "name": "limit",
        "in": "query",
        "required": False,
        "schema": {"type": "integer", "minimum": 1, "maximum": 100, "default": 20},
    },
    {"name": "order", "in": "query", "required": False, "schema": {"enum": ["asc", "desc"]}},
]
_VARIANT = {
    "name": "variant",
    "in": "query",
    "required": False,
    "schema": {"type": "string", "enum": ["video", "thumbnail"], "default": "video"},
}


_KEYED = (current_owner, current_key, current_admin)  # the dependencies that want a key


def complete(
    document: dict[str, Any], routes: Iterable[BaseRoute], models: list[str], aliases: list[str]
) -> dict[str, Any]:
    """``document`` (FastAPI's) with the bodies, answers and security of every route."""
    components = document.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    for unused in ("HTTPValidationError", "ValidationError"):  # the 422 never comes
        schemas.pop(unused, None)
    schemas.update(s.SCHEMAS)
    components["securitySchemes"] = {BEARER: SECURITY_SCHEME}
    keyed = {
        (method.lower(), route.path_format)
        for route in routes
        if isinstance(route, APIRoute)
        for method in route.methods or ()
        if any(dep.call in _KEYED for dep in route.dependant.dependencies)
    }
    paths = document["paths"]
    for path, item in paths.items():
        for method, operation in item.items():
            success, errors = OPERATIONS[(method, path)]
            needs_key = (method, path) in keyed
            statuses = [*errors, *((401,) if needs_key else ()), 500]
            if path != "/healthz":
                statuses.append(503)
            operation["responses"] = {"200": success} | {
                str(status): _answer(status, path, success) for status in sorted(statuses)
            }
            if needs_key:
                operation["security"] = [{BEARER: []}]
    create = paths["/v1/videos"]["post"]
    create["requestBody"] = s.bodies(lambda media: s.create_fields(models, media))
    openai = paths["/openai/v1/videos"]
    openai["post"]["requestBody"] = s.bodies(
        lambda media: s.openai_create_fields([*models, *aliases], media)
    )
    openai["get"]["parameters"] = _OPENAI_LIST
    for method in ("get", "head"):
        content = paths["/openai/v1/videos/{video_id}/content"][method]
        content["parameters"] = [*content.get("parameters", []), _VARIANT]
    paths["/v1/webhooks"]["post"]["requestBody"] = s.WEBHOOK_BODY
    paths["/v1/admin/keys"]["post"]["requestBody"] = s.KEY_BODY
    paths["/v1/admin/keys/{key_id}"]["patch"]["requestBody"] = s.KEY_CHANGE
    return document


def _answer(status: int, path: str, success: dict[str, Any]) -> dict[str, Any]:
    """The answer ``status`` at ``path``: an error, a part of a file, or no body (3xx)."""
    description = _REASONS[status]
    if status == 206:
        return {"description": description, "content": success["content"]}
    if status < 400:
        return {"description": description}
    schema = s.ref("Error")
    if path.startswith("/openai/"):
        schema = s.ref("OpenAIError")
    elif path.startswith("/api/v3/"):
        schema = s.ref("ArkError")
        if status == 404:  # a path that no route takes gets CometAPI's envelope
            schema = {"anyOf": [schema, s.ref("Error")]}
    return {"description": description, "content": {"application/json": {"schema": schema}}}
