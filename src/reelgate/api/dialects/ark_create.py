"""The Ark dialect's create request, parsed (pure: no I/O).

BytePlus ModelArk (and Volcengine Ark) create a video with::

    {"model": "seedance-1-0-pro-250528",
     "content": [{"type": "text", "text": "a cat --ratio 16:9 --dur 5"},
                 {"type": "image_url", "image_url": {"url": "data:image/png;base64,…"},
                  "role": "first_frame"}],
     "ratio": "16:9", "duration": 5, "resolution": "720p", "seed": 7, "watermark": false}

``parse_create`` turns that into the fields of reelgate's own create (``prompt``,
``model``, ``seconds``, ``size``, ``resolution``, ``callback_url``) and the image's
bytes, refusing in Ark's terms (``param`` names Ark's field).
"""

from __future__ import annotations

import base64
import binascii
import io
import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

from reelgate.domain.catalog import FPS, SIZES, Catalog, ModelSpec
from reelgate.domain.errors import InvalidParameter, MissingParameter
from reelgate.domain.request import storable_text
from reelgate.domain.sizes import nearest_ratio

_DATE_SUFFIX = re.compile(r"-[0-9]{6}$")  # seedance-1-0-pro-250528: a dated version
_COMMAND = re.compile(r"(?<!\S)--([a-z]+)[ \t]+(\S+)")
_INTEGER = re.compile(r"[+-]?[0-9]{1,10}")
_DATA_URL = re.compile(r"data:image/[a-z0-9.+-]+;base64,", re.I)

UNKNOWN_MODEL = "InvalidEndpointOrModel.NotFound"  # Ark's code (404) for a model it lacks
# Text commands in the prompt (``--ratio 16:9``), by each name Ark takes, to the field
# they set.
COMMANDS = {
    "resolution": "resolution",
    "rs": "resolution",
    "ratio": "ratio",
    "rt": "ratio",
    "duration": "duration",
    "dur": "duration",
    "seed": "seed",
    "watermark": "watermark",
    "wm": "watermark",
    "camerafixed": "camera_fixed",
    "cf": "camera_fixed",
    "framepersecond": "framespersecond",
    "fps": "framespersecond",
}
# Top-level fields that are checked and accepted, with no effect on a render.
ACCEPTED = ("seed", "watermark", "camera_fixed", "generate_audio", "service_tier")
ACCEPTED_MORE = ("execution_expires_after", "priority", "safety_identifier")
# Fields that must be false or absent: reelgate makes neither a last frame nor drafts.
NOT_TRUE = ("return_last_frame", "draft")
# Fields that must be absent (null): they ask for what reelgate does not do.
UNSUPPORTED = ("frames", "output_format", "omni_reference_task_type")
FIELDS = (
    "model",
    "content",
    "ratio",
    "duration",
    "resolution",
    "callback_url",
    "framespersecond",
    *ACCEPTED,
    *ACCEPTED_MORE,
    *NOT_TRUE,
    *UNSUPPORTED,
)


@dataclass(frozen=True, slots=True)
class ArkCreate:
    """A create request in reelgate's terms: the fields of ``TaskService.create``."""

    fields: dict[str, object]
    image: bytes | None = None
    ignored: dict[str, object] = field(default_factory=dict)  # accepted, without effect


def resolve_model(model: str, catalog: Catalog) -> ModelSpec:
    """The catalog model ``model`` names: its id, or Ark's name of it.

    Ark's names carry a date and BytePlus drops the ``doubao-`` prefix:
    ``seedance-1-0-pro-250528`` and ``doubao-seedance-1-0-pro-250528`` are
    ``doubao-seedance-1-0-pro``. An unknown model raises ``InvalidParameter`` naming
    ``model`` (the router answers it as Ark's 404).
    """
    names = {spec.id: spec for spec in catalog}
    candidates = [model, _DATE_SUFFIX.sub("", model)]
    candidates += ["doubao-" + name for name in candidates if not name.startswith("doubao-")]
    for name in candidates:
        if name in names:
            return names[name]
    raise InvalidParameter(
        f"The model or endpoint {model[:100]} does not exist or you do not have access to it. "
        f"Models here: {', '.join(names)}",
        param="model",
        code=UNKNOWN_MODEL,
    )


def parse_create(body: object, catalog: Catalog) -> ArkCreate:
    """Check an Ark create body and map it onto reelgate's create (see the module doc)."""
    if not isinstance(body, dict):
        raise InvalidParameter("The request body must be a JSON object.")
    given = {name: value for name, value in body.items() if value is not None}
    unknown = sorted(set(given) - set(FIELDS))
    if unknown:
        raise InvalidParameter(
            f"The parameter `{unknown[0][:100]}` is not supported.", param=unknown[0][:100]
        )
    model = given.get("model")
    if not isinstance(model, str) or not model.strip():
        raise MissingParameter(
            "The parameter `model` specified in the request is missing or empty.", param="model"
        )
    spec = resolve_model(model.strip(), catalog)
    prompt, commands, image = _content(given.get("content"))
    for name, value in commands.items():
        if name in given and given[name] != value:
            raise InvalidParameter(
                f"The parameter `{name}` is {given[name]!r} but the prompt's command says "
                f"{value!r}; give it once.",
                param=name,
            )
        given[name] = value
    for name in UNSUPPORTED:
        if name in given:
            raise InvalidParameter(f"The parameter `{name}` is not supported here.", param=name)
    for name in NOT_TRUE:
        if _flag(given, name):
            raise InvalidParameter(
                f"The parameter `{name}` must be false here: it is not supported.", param=name
            )
    for name in ("watermark", "camera_fixed", "generate_audio"):
        _flag(given, name)
    fps = given.get("framespersecond")
    if fps is not None and fps != FPS:
        raise InvalidParameter(
            f"The parameter `framespersecond` must be {FPS}.", param="framespersecond"
        )
    seconds = _duration(given.get("duration"), spec)
    ratio = _ratio(given.get("ratio"), image)
    resolution = given.get("resolution", "720p")
    if resolution not in spec.resolutions:
        raise InvalidParameter(
            f"The parameter `resolution` must be one of {', '.join(spec.resolutions)} "
            f"for model {spec.id}.",
            param="resolution",
        )
    if image is not None and not spec.image_input:
        raise InvalidParameter(
            f"The model {spec.id} takes text only: `content` may not hold an image here.",
            param="content.image_url",
        )
    _check_accepted(given)
    fields: dict[str, object] = {
        "prompt": prompt,
        "model": spec.id,
        "seconds": seconds,
        "size": ratio,
        "resolution": resolution,
    }
    if "callback_url" in given:
        fields["callback_url"] = _callback_url(given["callback_url"])
    ignored = {name: given[name] for name in (*ACCEPTED, *ACCEPTED_MORE) if name in given}
    return ArkCreate(fields, image, ignored)


def _content(content: object) -> tuple[str, dict[str, object], bytes | None]:
    """The prompt (its commands taken out), the commands, and the first frame's bytes."""
    if not isinstance(content, list) or not content:
        raise InvalidParameter(
            "The parameter `content` must be a non-empty array.", param="content"
        )
    texts: list[str] = []
    images: list[bytes] = []
    for item in content:
        kind = item.get("type") if isinstance(item, dict) else None
        if kind == "text":
            text = item.get("text")
            if not isinstance(text, str) or not storable_text(text):
                raise InvalidParameter(
                    "The parameter `content.text` must be a string.", param="content.text"
                )
            texts.append(text)
        elif kind == "image_url":
            images.append(_image(item))
        else:
            raise InvalidParameter(
                "Each item of `content` must be of type `text` or `image_url` here.",
                param="content.type",
            )
    if len(texts) != 1:
        raise (MissingParameter if not texts else InvalidParameter)(
            "The parameter `content` must hold exactly one `text` item (the prompt).",
            param="content.text",
        )
    if len(images) > 1:
        raise InvalidParameter(
            "The parameter `content` may hold one image (the first frame) at most.",
            param="content.image_url",
        )
    prompt, commands = parse_commands(texts[0])
    if not prompt.strip():
        raise MissingParameter(
            "The parameter `content.text` must not be empty.", param="content.text"
        )
    return prompt, commands, images[0] if images else None


def parse_commands(text: str) -> tuple[str, dict[str, object]]:
    """Take Ark's text commands (``--ratio 16:9 --dur 5``) out of a prompt.

    Only the command names Ark documents are read (``COMMANDS``); any other ``--word``
    stays in the prompt. A command given twice, or with a value of the wrong kind, is
    refused naming it.
    """
    commands: dict[str, object] = {}

    def take(match: re.Match[str]) -> str:
        name = COMMANDS.get(match[1])
        if name is None:
            return match[0]
        if name in commands:
            raise InvalidParameter(f"The text command `--{match[1]}` is given twice.", param=name)
        commands[name] = _command_value(name, match[2])
        return ""

    prompt = _COMMAND.sub(take, text)
    return (prompt.strip() if commands else text), commands


def _command_value(name: str, raw: str) -> object:
    if name in ("duration", "seed", "framespersecond"):
        if not _INTEGER.fullmatch(raw):
            raise InvalidParameter(f"The text command for `{name}` takes an integer.", param=name)
        return int(raw)
    if name in ("watermark", "camera_fixed"):
        if raw.lower() not in ("true", "false"):
            raise InvalidParameter(
                f"The text command for `{name}` takes true or false.", param=name
            )
        return raw.lower() == "true"
    return raw


def _image(item: dict[str, Any]) -> bytes:
    if item.get("role") not in (None, "first_frame"):
        raise InvalidParameter(
            "The parameter `role` must be `first_frame` here: last frames and reference "
            "images are not supported.",
            param="content.role",
        )
    holder = item.get("image_url")
    url = holder.get("url") if isinstance(holder, dict) else None
    if not isinstance(url, str) or not url:
        raise MissingParameter(
            "The parameter `content.image_url.url` is missing.", param="content.image_url"
        )
    if url.startswith(("http://", "https://")):
        raise InvalidParameter(
            "Images are taken as data URLs only (data:image/png;base64,…): this server "
            "does not fetch http(s) URLs.",
            param="content.image_url",
        )
    head = _DATA_URL.match(url)
    if head is None:
        raise InvalidParameter(
            "The parameter `content.image_url.url` must be a data URL "
            "(data:image/<type>;base64,<data>).",
            param="content.image_url",
        )
    try:
        data = base64.b64decode(url[head.end() :], validate=True)
    except (binascii.Error, ValueError):
        data = b""
    if not data:
        raise InvalidParameter(
            "The image in `content.image_url.url` is not valid base64.", param="content.image_url"
        )
    return data


def _flag(given: Mapping[str, object], name: str) -> bool:
    value = given.get(name)
    if value is not None and not isinstance(value, bool):
        raise InvalidParameter(f"The parameter `{name}` must be true or false.", param=name)
    return value is True


def _duration(value: object, spec: ModelSpec) -> int:
    if value is None:
        return 5 if spec.min_seconds <= 5 <= spec.max_seconds else spec.min_seconds
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidParameter("The parameter `duration` must be an integer.", param="duration")
    if not spec.min_seconds <= value <= spec.max_seconds:
        raise InvalidParameter(
            f"The parameter `duration` must be {spec.min_seconds} to {spec.max_seconds} "
            f"seconds for model {spec.id}.",
            param="duration",
        )
    return value


def _ratio(value: object, image: bytes | None) -> str:
    """The catalog ratio; ``adaptive`` is the one nearest to the image's (16:9 without)."""
    if value is None:
        value = "adaptive" if image is not None else "16:9"
    if value == "adaptive":
        if image is None:
            return "16:9"
        try:
            with warnings.catch_warnings():  # a huge declared size: refused by the image check
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                with Image.open(io.BytesIO(image)) as opened:  # the header only
                    width, height = opened.size
        except Exception:  # not an image (or too big): the create's image check refuses it
            return "16:9"
        return nearest_ratio(width, height) if width > 0 and height > 0 else "16:9"
    if value not in SIZES:
        raise InvalidParameter(
            f"The parameter `ratio` must be one of {', '.join(SIZES)} or adaptive.",
            param="ratio",
        )
    return str(value)


def _check_accepted(given: Mapping[str, object]) -> None:
    seed = given.get("seed")
    if seed is not None and (
        isinstance(seed, bool) or not isinstance(seed, int) or not -1 <= seed < 2**32
    ):
        raise InvalidParameter(
            "The parameter `seed` must be an integer from -1 to 4294967295.", param="seed"
        )
    tier = given.get("service_tier")
    if tier is not None and tier not in ("default", "flex"):
        raise InvalidParameter(
            "The parameter `service_tier` must be default or flex.", param="service_tier"
        )
    expires = given.get("execution_expires_after")
    if expires is not None and (
        isinstance(expires, bool) or not isinstance(expires, int) or not 3600 <= expires <= 259200
    ):
        raise InvalidParameter(
            "The parameter `execution_expires_after` must be 3600 to 259200 seconds.",
            param="execution_expires_after",
        )
    priority = given.get("priority")
    if priority is not None and (isinstance(priority, bool) or not isinstance(priority, int)):
        raise InvalidParameter("The parameter `priority` must be an integer.", param="priority")
    safety = given.get("safety_identifier")
    if safety is not None and not (
        isinstance(safety, str) and len(safety) <= 64 and storable_text(safety)
    ):
        raise InvalidParameter(
            "The parameter `safety_identifier` must be a string of at most 64 characters.",
            param="safety_identifier",
        )


def _callback_url(value: object) -> str:
    if not isinstance(value, str) or not value.startswith(("http://", "https://")):
        raise InvalidParameter(
            "The parameter `callback_url` must be an http(s) URL.", param="callback_url"
        )
    return value
