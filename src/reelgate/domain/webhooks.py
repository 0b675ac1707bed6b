"""Webhooks and idempotency keys: the records, the payload, the retry schedule, the checks.

Pure: no I/O. A terminal status change of a task becomes one ``Delivery`` per
target (each of the owner's endpoints, and the task's ``callback_url``), written
to the outbox in the same transaction as the change (a trigger on ``task_events``).
The delivery loop (``services.delivery``) signs and posts them per the Standard
Webhooks spec, and retries with exponential backoff for ``RETRY_WINDOW`` seconds.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
from dataclasses import dataclass
from urllib.parse import urlsplit

from reelgate.domain.errors import InvalidParameter

IDEMPOTENCY_TTL = 24 * 3600  # a key answers with its task for this long, then is free again
IDEMPOTENCY_KEY_MAX = 255
_IDEMPOTENCY_KEY = re.compile(r"[\x21-\x7e]{1,255}")  # printable ASCII, no spaces

RETRY_WINDOW = 24 * 3600  # a delivery is retried for this long after the change
RETRY_CAP = 4 * 3600  # the longest wait between two attempts
URL_MAX = 2048
MAX_ENDPOINTS = 20  # per owner
SECRET_PREFIX = "whsec_"
CALLBACK = "callback"  # the endpoint id of deliveries to a task's own callback_url

# What a terminal status is called in a delivery's ``type`` (OpenAI's event names).
EVENT_TYPES = {"SUCCESS": "video.completed", "FAILED": "video.failed", "ERROR": "video.failed"}


class DeliveryState:
    """A delivery's states (the ``state`` column)."""

    PENDING = "pending"  # due at ``next_at`` (claimed ones: pushed forward by the lease)
    DELIVERED = "delivered"  # a 2xx answer came back
    FAILED = "failed"  # every attempt of ``RETRY_WINDOW`` failed, or the target is refused


@dataclass(frozen=True, slots=True)
class IdempotencyRecord:
    """An ``Idempotency-Key`` taken by a create: the request's digest and its task."""

    owner: str
    key: str
    digest: str
    task_id: str
    created_at: float
    expires_at: float


@dataclass(frozen=True, slots=True)
class Endpoint:
    """An owner's webhook endpoint; ``secret`` signs what is delivered to it."""

    id: str
    owner: str
    url: str
    secret: str
    created_at: float
    description: str = ""


@dataclass(frozen=True, slots=True)
class Delivery:
    """One message to one target, with the task's state at the change, and its log."""

    id: str  # the ``webhook-id``: the same on every attempt
    owner: str
    endpoint_id: str  # an endpoint's id, or ``CALLBACK``: the task's own callback_url
    url: str
    task_id: str
    event_seq: int
    status: str
    progress: int
    model: str
    error_code: str | None
    error_message: str | None
    output_key: str | None
    occurred_at: float
    state: str
    attempts: int
    next_at: float
    created_at: float
    last_status: int | None = None  # the HTTP status of the last attempt (None: no answer)
    last_error: str | None = None
    delivered_at: float | None = None

    @property
    def type(self) -> str:
        """The event's type: ``video.completed`` or ``video.failed``."""
        return EVENT_TYPES.get(self.status, "video.updated")


@dataclass(frozen=True, slots=True)
class Attempt:
    """The outcome of one delivery attempt, as the outbox records it."""

    state: str  # a ``DeliveryState``
    next_at: float  # when a pending delivery is due again
    last_status: int | None  # the HTTP status (None: no answer)
    last_error: str | None
    delivered_at: float | None = None


def check_idempotency_key(key: str) -> str:
    """``key`` itself, or ``InvalidParameter`` (400) for a key that is empty, too long or
    holds other than printable ASCII."""
    if not _IDEMPOTENCY_KEY.fullmatch(key):
        raise InvalidParameter(
            f"Idempotency-Key must be 1 to {IDEMPOTENCY_KEY_MAX} printable ASCII characters "
            "without spaces",
            param="Idempotency-Key",
        )
    return key


def request_digest(fields: dict[str, object], image: bytes | None) -> str:
    """A digest of a parsed create request: its fields and the image's bytes."""
    text = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    digest = hashlib.sha256(text.encode())
    digest.update(b"\0image:" + (hashlib.sha256(image).digest() if image is not None else b"-"))
    return digest.hexdigest()


def check_webhook_url(url: object, param: str) -> str:
    """A syntactically acceptable webhook URL (http or https, a host, no credentials).

    Where its host points is checked separately (``services.addresses``).
    """
    if not isinstance(url, str) or not url.strip():
        raise InvalidParameter(f"{param} must be an http or https URL", param=param)
    url = url.strip()
    if len(url) > URL_MAX:
        raise InvalidParameter(f"{param} is longer than {URL_MAX} characters", param=param)
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise InvalidParameter(f"{param} is not a valid URL", param=param) from exc
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidParameter(f"{param} must be an http or https URL with a host", param=param)
    if parts.username is not None or parts.password is not None:
        raise InvalidParameter(f"{param} must not carry credentials", param=param)
    if not url.isascii() or any(c in url for c in " \t\r\n"):
        raise InvalidParameter(f"{param} must be ASCII without spaces", param=param)
    del port
    return url


def new_secret() -> str:
    """A fresh signing secret: ``whsec_`` and 32 random bytes in base64."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def secret_of(raw: bytes) -> str:
    """``raw`` key bytes as a signing secret: ``whsec_`` and their base64."""
    return SECRET_PREFIX + base64.b64encode(raw).decode()


def sign(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` header: ``v1,<base64 HMAC-SHA256 of "id.timestamp.body">``."""
    key = base64.b64decode(secret.removeprefix(SECRET_PREFIX))
    signed = f"{message_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def next_delay(attempts: int, *, base: float, jitter: float = 0.0) -> float:
    """The wait before attempt ``attempts + 1``: ``base`` doubled per attempt, capped.

    ``jitter`` (0..1) is a random fraction of up to 10% added, so that retries of
    many deliveries to one receiver spread out.
    """
    delay = min(base * 2.0 ** max(0, attempts - 1), float(RETRY_CAP))
    return delay * (1 + 0.1 * jitter)


def payload(delivery: Delivery, video_url: str | None, sent_at: int) -> bytes:
    """The JSON body of ``delivery``.

    CometAPI's guide fields (``task_id``, ``status``, ``progress``, ``result.video_url``)
    and the event envelope of OpenAI and the Standard Webhooks spec (``id``, ``object``,
    ``type``, ``created_at``, ``timestamp``, ``data``), in one object.
    """
    error = None
    if delivery.error_code is not None:
        error = {"code": delivery.error_code, "message": delivery.error_message or ""}
    data: dict[str, object] = {
        "id": delivery.task_id,
        "object": "video",
        "model": delivery.model,
        "status": delivery.status,
        "progress": delivery.progress,
        "completed_at": int(delivery.occurred_at),
        "video_url": video_url,
        "error": error,
    }
    body = {
        "id": delivery.id,
        "object": "event",
        "type": delivery.type,
        "created_at": int(delivery.occurred_at),
        "timestamp": sent_at,
        "data": data,
        "task_id": delivery.task_id,
        "status": delivery.status,
        "progress": delivery.progress,
        "result": {"video_url": video_url},
    }
    if error is not None:
        body["error"] = error
    return json.dumps(body, separators=(",", ":")).encode()
