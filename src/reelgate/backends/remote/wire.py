"""What the CometAPI and OpenAI-style adapters share: the ``/v1/videos`` family's wire.

Both speak one family of JSON: a video object with ``id``, ``status``, ``progress`` and
``error: {code, message}``, refusals in the envelope
``{"error": {"message", "type", "param", "code"}}``, and a create request sent as
``multipart/form-data`` with the image as the ``input_reference`` file part.
The helpers here read that family tolerantly (a provider's quirks are the adapters').
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

import httpx

from reelgate.domain.errors import UpstreamBusy, UpstreamRefused
from reelgate.ports import UpstreamState, UpstreamTask

MESSAGE_MAX = 500  # characters of a provider's message kept for the client
# Words in a provider's error code (or type) that mean its content filter refused.
CONTENT_WORDS = ("content", "moderation", "sensitive", "policy", "safety", "nsfw")
_IMAGE_SUFFIX = {"image/png": ".png", "image/jpeg": ".jpg", "image/webp": ".webp"}


@dataclass(frozen=True, slots=True)
class WireError:
    """An error as a provider sent it (every part may be empty)."""

    code: str = ""
    message: str = ""
    type: str = ""
    param: str = ""


def api_prefix(base_url: str) -> str:
    """``/v1``, or nothing when the configured base URL already ends in ``/v1``."""
    return "" if urlsplit(base_url).path.rstrip("/").endswith("/v1") else "/v1"


def video_path(prefix: str, upstream_id: str, *rest: str) -> str:
    """The path of one video (``{prefix}/videos/{id}/…``), its id quoted as one segment."""
    return "/".join((f"{prefix}/videos", quote(upstream_id, safe=""), *rest))


def multipart(
    fields: dict[str, str], image: bytes | None, image_type: str | None
) -> list[tuple[str, tuple[str | None, bytes | str, str | None]]]:
    """The ``files=`` argument of httpx for a multipart body, even without an image.

    Text fields go as parts without a file name; the image as the ``input_reference``
    file part, with its media type.
    """
    parts: list[tuple[str, tuple[str | None, bytes | str, str | None]]] = [
        (name, (None, value, None)) for name, value in fields.items()
    ]
    if image is not None:
        media = image_type or "application/octet-stream"
        name = "input_reference" + _IMAGE_SUFFIX.get(media, "")
        parts.append(("input_reference", (name, image, media)))
    return parts


def wire_error(value: Any) -> WireError:
    """Read ``{code, message, type, param}`` (or a bare string); anything else is empty."""
    if isinstance(value, str):
        return WireError(message=clip(value))
    if not isinstance(value, dict):
        return WireError()
    return WireError(
        code=_text(value.get("code")),
        message=clip(_text(value.get("message"))),
        type=_text(value.get("type")),
        param=_text(value.get("param")),
    )


def envelope(response: httpx.Response) -> WireError:
    """The error in a refusal's body (``{"error": {...}}``); empty when it has none."""
    try:
        data = response.json()
    except ValueError:
        return WireError()
    if not isinstance(data, dict):
        return WireError()
    if "error" in data:
        return wire_error(data["error"])
    return wire_error(data)  # some gateways send the fields at the top level


def is_content(error: WireError) -> bool:
    """Whether the provider's code or type says its content filter refused."""
    words = f"{error.code} {error.type}".lower()
    return any(word in words for word in CONTENT_WORDS)


def refusal(provider: str, response: httpx.Response) -> UpstreamRefused | UpstreamBusy:
    """The error for a create answered with a status that is neither 2xx, 429 nor 5xx."""
    status = response.status_code
    error = envelope(response)
    if status in (401, 403):
        return UpstreamRefused(
            f"the provider {provider} refused our credentials ({status})",
            code="upstream_refused",
            provider=provider,
        )
    if status in (408, 409) or status < 400:
        return UpstreamBusy(
            f"{provider}: the provider answered {status} to a submission", provider=provider
        )
    code = "content_rejected" if is_content(error) else "invalid_parameter"
    message = error.message or f"the provider refused the task ({status})"
    return UpstreamRefused(message, code=code, provider=provider)


def ended(status: str, error: Any, progress: int | None, *, errored: bool) -> UpstreamTask:
    """A video the provider ended ``status`` (failed; ``errored``: its own fault)."""
    wire = wire_error(error)
    if errored:
        code = "upstream_error"
    else:
        code = "content_rejected" if is_content(wire) else "upstream_failed"
    message = wire.message or f"the provider ended the task {status}"
    return UpstreamTask(
        UpstreamState.FAILED, progress=progress, error_code=code, error_message=message
    )


def progress_of(value: Any) -> int | None:
    """A progress value as an integer 0..100: ``45``, ``45.5``, ``"45"`` or ``"45%"``."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        value = value.strip().removesuffix("%").strip()
        try:
            value = float(value)
        except ValueError:
            return None
    if not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return max(0, min(100, int(value)))


def unix_seconds(value: Any) -> float | None:
    """A Unix time in seconds; milliseconds (a value past the year 33658) are converted."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        if not isinstance(value, str):
            return None
        try:
            value = float(value)
        except ValueError:
            return None
    if not math.isfinite(value) or value <= 0:
        return None
    return float(value) / 1000 if value >= 1e12 else float(value)


def clip(text: str) -> str:
    """``text`` cut to ``MESSAGE_MAX`` characters."""
    return text if len(text) <= MESSAGE_MAX else text[: MESSAGE_MAX - 1] + "…"


def _text(value: Any) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else str(value)
