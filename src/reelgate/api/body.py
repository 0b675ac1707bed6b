"""Reading a create request's body: multipart, urlencoded or JSON, one image at most."""

from __future__ import annotations

import base64
import binascii
import json
import logging
from collections import Counter
from typing import Any

from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import Request

from reelgate.domain.errors import (
    InvalidParameter,
    InvalidRequest,
    ReelgateError,
    Unavailable,
    UnsupportedMediaType,
)

log = logging.getLogger("reelgate.api")

FORM_TYPES = ("multipart/form-data", "application/x-www-form-urlencoded")
IMAGE_FIELD = "input_reference"


async def read_create_body(request: Request) -> tuple[dict[str, object], bytes | None]:
    """The request's fields and the bytes of its ``input_reference`` image, if any."""
    content_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if content_type in FORM_TYPES:
        return await _read_form(request)
    if content_type == "application/json" or content_type.endswith("+json"):
        return await _read_json(request)
    raise UnsupportedMediaType(
        f"unsupported content type {content_type or '(none)'!r}; send multipart/form-data, "
        "application/x-www-form-urlencoded or application/json"
    )


async def _read_form(request: Request) -> tuple[dict[str, object], bytes | None]:
    try:
        form = await request.form(max_files=1, max_fields=32, max_part_size=64 * 1024)
    except ReelgateError:  # the body limit, raised while the form streams in
        raise
    except HTTPException as exc:  # starlette's words for python-multipart's parse errors
        raise InvalidRequest(f"could not parse the form body: {exc.detail}") from exc
    except OSError as exc:  # spooling a large part to a temporary file: the server's fault
        log.warning("buffering a form body failed: %s", exc)
        raise Unavailable("the upload could not be buffered") from exc
    except Exception as exc:  # anything else the parsers raise: no raw text to the client
        raise InvalidRequest(f"could not parse the form body ({type(exc).__name__})") from exc
    fields: dict[str, object] = {}
    image: bytes | None = None
    for name in form:
        values = form.getlist(name)
        if len(values) > 1:
            raise InvalidParameter(f"{name} was sent {len(values)} times", param=name)
        value = values[0]
        if isinstance(value, UploadFile):
            if name != IMAGE_FIELD:
                raise InvalidParameter(f"{name} must be a text field, not a file", param=name)
            image = await value.read()
            await value.close()
        elif name == IMAGE_FIELD:
            image = _data_url(value) if value else None
        else:
            fields[name] = value
    return fields, image


async def _read_json(request: Request) -> tuple[dict[str, object], bytes | None]:
    try:
        body: Any = json.loads(await request.body(), object_pairs_hook=_unique_keys)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidRequest(f"the body is not valid JSON: {exc}") from exc
    except RecursionError as exc:  # the parser recurses once per level of nesting
        raise InvalidRequest("the JSON body is nested too deeply") from exc
    if not isinstance(body, dict):
        raise InvalidRequest("the JSON body must be an object")
    image = None
    value = body.pop(IMAGE_FIELD, None)
    if value is not None and value != "":
        if not isinstance(value, str):
            raise InvalidParameter(
                "input_reference in JSON must be a data URL (data:image/png;base64,…)",
                param=IMAGE_FIELD,
            )
        image = _data_url(value)
    return body, image


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    body = dict(pairs)
    if len(body) < len(pairs):
        key, times = Counter(key for key, _ in pairs).most_common(1)[0]
        raise InvalidParameter(f"{key} was sent {times} times", param=key)
    return body


def _data_url(value: str) -> bytes:
    """Decode ``data:image/…;base64,…``; other URLs are refused (no fetching)."""
    head, sep, payload = value.partition(",")
    if not sep or not head.startswith("data:") or not head.endswith(";base64"):
        raise InvalidParameter(
            "input_reference must be an uploaded image file, or a base64 data URL in JSON",
            param=IMAGE_FIELD,
        )
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidParameter("input_reference is not valid base64", param=IMAGE_FIELD) from exc
