"""Pure ASGI middleware: request ids on every response, and a request body limit."""

from __future__ import annotations

import logging
import random

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from reelgate import logs
from reelgate.api.errors import unexpected_error
from reelgate.domain.errors import PayloadTooLarge

log = logging.getLogger("reelgate.api")

REQUEST_ID = b"x-request-id"


def sane_request_id(value: bytes) -> str:
    """A client's ``X-Request-Id`` if it is fit to echo (1 to 128 printable), else ``""``."""
    candidate = value.decode("latin-1")
    return candidate if 0 < len(candidate) <= 128 and candidate.isprintable() else ""


def new_request_id() -> str:
    """``req_`` and 96 random bits in hex: unique enough to find a request in the logs.

    Not a secret, so the fast generator (reseeded in each forked process) will do.
    """
    return f"req_{random.getrandbits(96):024x}"


def log_unexpected(scope: Scope, request_id: str) -> None:
    """Log the exception being handled, with the request and its id."""
    log.exception(
        "unexpected error in %s %s (request %s)",
        scope["method"],
        scope["path"],
        request_id,
        extra={"request_id": request_id},
    )


class RequestId:
    """Give each request an id (or keep a sane one the client sent) and echo it back.

    Also the last line of defence: an unexpected exception becomes a 500 in the
    envelope, logged with its traceback and the request id. (``videos.Retrieve``, the
    fast path of the retrieve route, does the same by itself.)
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = ""
        for name, value in scope["headers"]:
            if name == REQUEST_ID:
                request_id = sane_request_id(value)
                break
        request_id = request_id or new_request_id()
        scope.setdefault("state", {})["request_id"] = request_id
        logs.REQUEST_ID.set(request_id)  # for the log records of this request (JSON logs)
        header = (REQUEST_ID, request_id.encode("latin-1"))

        started = False

        async def send_with_id(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                message["headers"] = [*message.get("headers", []), header]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            log_unexpected(scope, request_id)
            if started:
                raise
            await unexpected_error(request_id)(scope, receive, send_with_id)


class BodyLimit:
    """Refuse request bodies over ``max_bytes`` with 413, by header and while streaming."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD"):
            await self.app(scope, receive, send)
            return
        limit = self.max_bytes
        declared = dict(scope["headers"]).get(b"content-length", b"")
        too_large = declared.isdigit() and int(declared) > limit
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            if too_large:
                raise PayloadTooLarge(f"the request body is over the limit of {limit} bytes")
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > limit:
                raise PayloadTooLarge(f"the request body is over the limit of {limit} bytes")
            return message

        await self.app(scope, limited, send)
