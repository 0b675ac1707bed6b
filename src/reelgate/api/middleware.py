"""Pure ASGI middleware: request ids on every response, and a request body limit."""

from __future__ import annotations

import logging
import secrets

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from reelgate.api.errors import unexpected_error
from reelgate.domain.errors import PayloadTooLarge

log = logging.getLogger("reelgate.api")

REQUEST_ID = b"x-request-id"


class RequestId:
    """Give each request an id (or keep a sane one the client sent) and echo it back.

    Also the last line of defence: an unexpected exception becomes a 500 in the
    envelope, logged with its traceback and the request id.
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
                candidate = value.decode("latin-1")
                if 0 < len(candidate) <= 128 and candidate.isprintable():
                    request_id = candidate
                break
        request_id = request_id or "req_" + secrets.token_hex(12)
        scope.setdefault("state", {})["request_id"] = request_id
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
            log.exception(
                "unexpected error in %s %s (request %s)", scope["method"], scope["path"], request_id
            )
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
