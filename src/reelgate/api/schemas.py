"""The JSON Schemas of /openapi.json: what each route answers, and the create bodies.

The handlers write their answers themselves (``videos.video_json`` and the presenters
of the dialects), so FastAPI cannot see their shapes: these schemas say them, field for
field, nullable fields and extra fields (``task_id``, ``expires_at``, ``error``)
included. ``api/openapi.py`` puts them into the document; tests/hardening/
test_schemathesis.py checks the server's answers against them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from reelgate.api.dialects.ark_present import STATUSES as ARK_STATUSES
from reelgate.api.dialects.openai import STATUSES as OPENAI_STATUSES
from reelgate.domain.catalog import LINES, PROMPT_MAX_CHARS, SIZES
from reelgate.domain.status import Status

Schema = dict[str, Any]

STRING: Schema = {"type": "string"}
INTEGER: Schema = {"type": "integer"}
BOOLEAN: Schema = {"type": "boolean"}
SECONDS: Schema = {"type": "integer", "description": "Unix seconds"}
BINARY: Schema = {"type": "string", "format": "binary"}


def ref(name: str) -> Schema:
    """A reference to the component schema ``name``."""
    return {"$ref": f"#/components/schemas/{name}"}


def nullable(schema: Schema) -> Schema:
    """``schema`` or ``null`` (OpenAPI 3.1: a list of types)."""
    return {**schema, "type": [schema["type"], "null"]}


def const(value: object) -> Schema:
    return {"const": value}


def obj(properties: dict[str, Schema], required: tuple[str, ...] | None = None) -> Schema:
    """An object of ``properties``; all of them required unless ``required`` names some."""
    names = list(properties) if required is None else list(required)
    return {"type": "object", "properties": properties, "required": names}


def listed(item: Schema) -> Schema:
    return obj({"object": const("list"), "data": {"type": "array", "items": item}})


def _error(nullable_fields: bool) -> Schema:
    maybe = nullable(STRING) if nullable_fields else STRING
    inner = obj({"message": STRING, "type": STRING, "param": maybe, "code": maybe})
    return obj({"error": inner})


_TASK_ERROR = obj({"code": STRING, "message": STRING})
_PROGRESS: Schema = {"type": "integer", "minimum": 0, "maximum": 100}
_VIDEO = {
    "id": STRING,
    "task_id": {**STRING, "description": "the same value as id"},
    "object": const("video"),
    "model": STRING,
    "status": {"type": "string", "enum": [status.value for status in Status]},
    "progress": _PROGRESS,
    "created_at": SECONDS,
    "completed_at": {**nullable(SECONDS), "description": "null until the task is terminal"},
    "video_url": {**STRING, "description": "on SUCCESS only: a signed link to the MP4"},
    "expires_at": {**SECONDS, "description": "on SUCCESS only: when video_url expires"},
    "files_expired_at": {
        **SECONDS,
        "description": "on SUCCESS only, instead of video_url: when retention deleted the "
        "video and its thumbnail (the task itself is kept)",
    },
    "error": {**_TASK_ERROR, "description": "on FAILED and ERROR (a cancelled task: cancelled)"},
}
_ALWAYS = ("id", "task_id", "object", "model", "status", "progress", "created_at")

# CometAPI's shapes (the /v1 routes, the health probes and the signed links)
COMETAPI: dict[str, Schema] = {
    "Error": {**_error(True), "description": "CometAPI's error envelope"},
    "Video": obj(_VIDEO, (*_ALWAYS, "completed_at")),
    "CreatedVideo": {
        **obj({name: _VIDEO[name] for name in _ALWAYS}),
        "description": "the task as created: SUBMITTED, progress 0",
    },
    "VideoList": obj(
        {
            "object": const("list"),
            "data": {"type": "array", "items": ref("Video")},
            "has_more": BOOLEAN,
            "first_id": nullable(STRING),
            "last_id": nullable(STRING),
        }
    ),
    "VideoDeleted": obj({"id": STRING, "object": const("video.deleted"), "deleted": const(True)}),
    "ModelList": listed(
        obj(
            {
                "id": STRING,
                "object": const("model"),
                "owned_by": STRING,
                "description": STRING,
                "renderer": STRING,
                "routes": {
                    "type": "array",
                    "items": obj(
                        {
                            "provider": STRING,
                            "kind": STRING,
                            "region": nullable(STRING),
                            "upstream_model": STRING,
                        }
                    ),
                },
                "seconds": obj({"min": INTEGER, "max": INTEGER, "default": INTEGER}),
                "resolutions": {"type": "array", "items": STRING},
                "sizes": {"type": "array", "items": STRING},
                "image_input": BOOLEAN,
            }
        )
    ),
    "WebhookEndpoint": obj(
        {
            "id": STRING,
            "object": const("webhook_endpoint"),
            "url": STRING,
            "description": STRING,
            "created_at": SECONDS,
            "secret": {**STRING, "description": "only in the answer of the create"},
        },
        ("id", "object", "url", "description", "created_at"),
    ),
    "WebhookEndpointList": listed(ref("WebhookEndpoint")),
    "WebhookEndpointDeleted": obj(
        {"id": STRING, "object": const("webhook_endpoint.deleted"), "deleted": const(True)}
    ),
    "WebhookDeliveryList": listed(
        obj(
            {
                "id": STRING,
                "object": const("webhook_delivery"),
                "target": {"type": "string", "enum": ["endpoint", "callback_url"]},
                "endpoint_id": nullable(STRING),
                "url": STRING,
                "task_id": STRING,
                "type": STRING,
                "status": STRING,
                "state": STRING,
                "attempts": INTEGER,
                "created_at": SECONDS,
                "next_attempt_at": nullable(SECONDS),
                "delivered_at": nullable(SECONDS),
                "last_status": nullable(INTEGER),
                "last_error": nullable(STRING),
            }
        )
    ),
    "CallbackSecret": obj({"object": const("webhook_secret"), "secret": STRING}),
    "CallbackReceived": obj({"received": const(True), "polled_now": BOOLEAN}),
    "Health": obj({"status": const("ok")}),
    "Ready": obj({"status": const("ready")}),
}

# OpenAI's shapes (/openai/v1)
OPENAI: dict[str, Schema] = {
    "OpenAIError": {**_error(True), "description": "OpenAI's error shape"},
    "OpenAIVideo": obj(
        {
            "id": STRING,
            "object": const("video"),
            "model": STRING,
            "status": {"type": "string", "enum": sorted(set(OPENAI_STATUSES.values()))},
            "progress": _PROGRESS,
            "created_at": SECONDS,
            "completed_at": nullable(SECONDS),
            "expires_at": nullable(SECONDS),
            "error": {**_TASK_ERROR, "type": ["object", "null"]},
            "prompt": STRING,
            "seconds": {**STRING, "description": "a number of seconds, as a string"},
            "size": {**STRING, "description": "the frame size, WIDTHxHEIGHT"},
            "remixed_from_video_id": nullable(STRING),
        }
    ),
    "OpenAIVideoList": obj(
        {
            "object": const("list"),
            "data": {"type": "array", "items": ref("OpenAIVideo")},
            "first_id": nullable(STRING),
            "last_id": nullable(STRING),
            "has_more": BOOLEAN,
        }
    ),
    "OpenAIVideoDeleted": obj(
        {"id": STRING, "object": const("video.deleted"), "deleted": const(True)}
    ),
    "OpenAIModelList": listed(
        obj({"id": STRING, "object": const("model"), "created": INTEGER, "owned_by": STRING})
    ),
}

# Ark's shapes (/api/v3)
ARK: dict[str, Schema] = {
    "ArkError": {**_error(False), "description": "Ark's error shape"},
    "ArkCreated": obj({"id": STRING}),
    "ArkTask": obj(
        {
            "id": STRING,
            "model": STRING,
            "status": {"type": "string", "enum": list(ARK_STATUSES)},
            "created_at": SECONDS,
            "updated_at": SECONDS,
            "resolution": STRING,
            "ratio": STRING,
            "duration": INTEGER,
            "framespersecond": INTEGER,
            "service_tier": STRING,
            "execution_expires_after": INTEGER,
            "content": {**obj({"video_url": STRING}), "description": "on succeeded only"},
            "usage": obj({"completion_tokens": INTEGER, "total_tokens": INTEGER}),
            "error": {**_TASK_ERROR, "description": "on failed only"},
        },
        (
            "id",
            "model",
            "status",
            "created_at",
            "updated_at",
            "resolution",
            "ratio",
            "duration",
            "framespersecond",
            "service_tier",
            "execution_expires_after",
        ),
    ),
    "ArkTaskList": obj({"items": {"type": "array", "items": ref("ArkTask")}, "total": INTEGER}),
    "ArkDeleted": {"type": "object", "maxProperties": 0, "description": "an empty object"},
}

_INT_OR_NULL: Schema = {"type": ["integer", "null"], "minimum": 0}
_LIMITS = obj(
    {
        "rate_per_minute": {**_INT_OR_NULL, "description": "creates per UTC minute"},
        "max_active": {**_INT_OR_NULL, "description": "unfinished tasks at a time"},
        "seconds_per_day": {**_INT_OR_NULL, "description": "seconds of video per UTC day"},
    }
)
_KEY_FIELDS: dict[str, Schema] = {
    "id": STRING,
    "object": const("api_key"),
    "owner": STRING,
    "name": STRING,
    "prefix": {**STRING, "description": "the secret's first characters"},
    "role": {"type": "string", "enum": ["admin", "user"]},
    "limits": {**_LIMITS, "description": "null: no limit; counted over the key's owner"},
    "created_at": SECONDS,
    "revoked_at": nullable(SECONDS),
    "active": BOOLEAN,
}
_COST: Schema = {"type": ["number", "null"], "description": "null: no price configured"}
# Keys and usage (/v1/admin, /v1/usage)
ADMIN: dict[str, Schema] = {
    "ApiKey": obj(_KEY_FIELDS),
    "ApiKeyCreated": obj({**_KEY_FIELDS, "secret": {**STRING, "description": "shown once"}}),
    "ApiKeyList": listed(ref("ApiKey")),
    "Usage": obj(
        {
            "object": const("usage"),
            "from": {**STRING, "format": "date"},
            "to": {**STRING, "format": "date"},
            "data": {
                "type": "array",
                "items": obj(
                    {
                        "owner": STRING,
                        "model": STRING,
                        "tasks": INTEGER,
                        "seconds": INTEGER,
                        "tokens": INTEGER,
                        "cost": _COST,
                        "currency": nullable(STRING),
                    }
                ),
            },
            "totals": obj(
                {
                    "tasks": INTEGER,
                    "seconds": INTEGER,
                    "tokens": INTEGER,
                    "cost": {"type": "object", "additionalProperties": {"type": "number"}},
                }
            ),
        }
    ),
}
KEY_BODY: Schema = {
    "required": True,
    "content": {
        "application/json": {
            "schema": obj(
                {
                    "owner": STRING,
                    "name": STRING,
                    "role": {"type": "string", "enum": ["admin", "user"], "default": "user"},
                    "limits": _LIMITS,
                },
                ("owner",),
            )
        }
    },
}
KEY_CHANGE: Schema = {
    "required": True,
    "content": {
        "application/json": {
            "schema": obj(
                {
                    "name": STRING,
                    "role": {"type": "string", "enum": ["admin", "user"]},
                    "limits": {**_LIMITS, "required": []},
                },
                (),
            )
        }
    },
}

SCHEMAS: dict[str, Schema] = {**COMETAPI, **OPENAI, **ARK, **ADMIN}

_SIZE: Schema = {
    "anyOf": [
        {"type": "string", "enum": list(SIZES)},
        {"type": "string", "pattern": "^[0-9]{1,5}[xX][0-9]{1,5}$"},
    ],
    "description": "a ratio, or a size in pixels (WIDTHxHEIGHT)",
}
_NUMBER: Schema = {
    "anyOf": [INTEGER, {"type": "string", "pattern": "^[0-9]{1,3}$"}],
    "description": "an integer in the model's range (a string of digits is taken too)",
}


def create_fields(models: list[str], media: str) -> Schema:
    """The create's fields (``POST /v1/videos``) in ``media``, ``models`` to choose from.

    In multipart, ``input_reference`` is a file; in JSON and urlencoded forms, a
    ``data:image/…;base64,…`` URL.
    """
    json = media == "application/json"
    image: Schema = (
        {**BINARY, "description": "one JPEG, PNG or WebP image"}
        if media == "multipart/form-data"
        else {"type": "string", "pattern": "^data:image/", "description": "a base64 data URL"}
    )
    return {
        "type": "object",
        "properties": {
            "prompt": {"type": "string", "minLength": 1, "maxLength": PROMPT_MAX_CHARS},
            "model": {"type": "string", "enum": models},
            "seconds": _NUMBER if json else INTEGER,
            "size": _SIZE,
            "resolution": {"type": "string", "enum": list(LINES)},
            "input_reference": image,
            "callback_url": {"type": "string", "format": "uri", "maxLength": 2048},
        },
        "required": ["prompt", "model"],
        "additionalProperties": False,
    }


def openai_create_fields(models: list[str], media: str) -> Schema:
    """OpenAI's create (``client.videos.create``): the model defaults to ``sora-2``."""
    fields = create_fields(models, media)
    properties = dict(fields["properties"])
    properties["seconds"] = {"type": "string", "pattern": "^[0-9]{1,3}$", "default": "4"}
    properties["size"] = {**_SIZE, "default": "720x1280"}
    properties["input_reference[image_url]"] = {
        "type": "string",
        "pattern": "^data:image/",
        "description": "the image as a base64 data URL (no URL is fetched)",
    }
    return {**fields, "properties": properties, "required": ["prompt"]}


CREATE_TYPES = ("multipart/form-data", "application/x-www-form-urlencoded", "application/json")


def bodies(fields: Callable[[str], Schema]) -> Schema:
    """A request body in the three media types a create takes."""
    content = {media: {"schema": fields(media)} for media in CREATE_TYPES}
    return {"required": True, "content": content}


WEBHOOK_BODY: Schema = {
    "required": True,
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "properties": {
                    "url": {"type": "string", "format": "uri", "maxLength": 2048},
                    "description": {"type": "string", "maxLength": 200},
                },
                "required": ["url"],
                "additionalProperties": False,
            }
        }
    },
}
