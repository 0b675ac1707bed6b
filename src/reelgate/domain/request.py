"""Parsing and validating a create request's fields (API.md, "Create")."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from reelgate.domain.catalog import (
    DEFAULT_RESOLUTION,
    DEFAULT_SECONDS,
    DEFAULT_SIZE,
    PROMPT_MAX_CHARS,
    Catalog,
)
from reelgate.domain.errors import InvalidParameter, MissingParameter, TaskNotFound
from reelgate.domain.sizes import is_pixels, parse_pixels

_INTEGER = re.compile(r"[+-]?[0-9]{1,9}")
FIELDS = ("prompt", "model", "seconds", "size", "resolution", "input_reference")


def storable_text(text: str) -> bool:
    """True when every store keeps ``text`` exactly as sent.

    PostgreSQL refuses NUL characters in text, and no store can encode a lone
    (unpaired) surrogate, which JSON's ``\\ud800`` escapes can carry: such text is
    refused at the edge, so that the stores never see it and behave alike.
    """
    if "\x00" in text:
        return False
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def check_task_id(task_id: str) -> str:
    """``task_id`` itself, or ``TaskNotFound`` for an id that no store could hold.

    Such an id gets exactly the answer of an unknown one (400 ``task_not_exist``).
    """
    if not storable_text(task_id):
        raise TaskNotFound()
    return task_id


@dataclass(frozen=True, slots=True)
class CreateRequest:
    """A validated create request (the image itself travels separately)."""

    model: str
    prompt: str
    seconds: int
    size: str
    resolution: str


def parse_create(
    fields: Mapping[str, object], *, has_image: bool, catalog: Catalog
) -> CreateRequest:
    """Validate the fields of a create request, in the order a user fixes them."""
    unknown = sorted(set(fields) - set(FIELDS))
    if unknown:
        raise InvalidParameter(
            f"unknown parameter {unknown[0]!r}; allowed: {', '.join(FIELDS)}", param=unknown[0]
        )
    prompt = _text(fields, "prompt")
    if prompt is None or not prompt.strip():
        raise MissingParameter("prompt is required and must not be empty", param="prompt")
    if len(prompt) > PROMPT_MAX_CHARS:
        raise InvalidParameter(
            f"prompt is {len(prompt)} characters; at most {PROMPT_MAX_CHARS} are allowed",
            param="prompt",
        )
    model = _text(fields, "model")
    if not model:
        raise MissingParameter("model is required", param="model")
    spec = catalog.get(model)
    seconds = _integer(fields, "seconds", DEFAULT_SECONDS)
    size = _text(fields, "size") or DEFAULT_SIZE
    resolution = _text(fields, "resolution")
    if is_pixels(size):  # 1280x720: the nearest ratio; an explicit resolution wins
        mapped = parse_pixels(size, spec.resolutions)
        size, resolution = mapped.ratio, resolution or mapped.resolution
    resolution = resolution or DEFAULT_RESOLUTION
    spec.check(seconds=seconds, size=size, resolution=resolution, has_image=has_image)
    return CreateRequest(model, prompt, seconds, size, resolution)


def _text(fields: Mapping[str, object], name: str) -> str | None:
    value = fields.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidParameter(f"{name} must be a string", param=name)
    if not storable_text(value):
        raise InvalidParameter(
            f"{name} must not contain NUL characters or unpaired surrogates", param=name
        )
    return value.strip() if name != "prompt" else value


def _integer(fields: Mapping[str, object], name: str, default: int) -> int:
    value = fields.get(name)
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        raise InvalidParameter(f"{name} must be an integer", param=name)
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and _INTEGER.fullmatch(value.strip()):
        return int(value.strip())
    raise InvalidParameter(f"{name} must be an integer, got {value!r}", param=name)
