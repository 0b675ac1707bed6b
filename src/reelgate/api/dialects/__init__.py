"""The OpenAI and Ark dialects: parsers and presenters over the same tasks.

Each dialect answers errors in its own shape; ``error_route`` makes the route class
that does so for every route of a dialect's router (its dependencies included).
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException

from reelgate.api.middleware import log_unexpected
from reelgate.domain.errors import ReelgateError

ErrorAnswer = Callable[[Request, ReelgateError], Response]


def error_route(answer: ErrorAnswer) -> type[APIRoute]:
    """A route class whose handlers answer domain errors with ``answer``.

    An unexpected exception is logged with the request id and answered as a plain
    ``ReelgateError`` (a 500 without detail); Starlette's ``HTTPException`` passes.
    """

    class DialectRoute(APIRoute):
        def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
            handler = super().get_route_handler()

            async def dialect_handler(request: Request) -> Response:
                try:
                    return await handler(request)
                except ReelgateError as exc:
                    return answer(request, exc)
                except HTTPException:
                    raise
                except Exception:
                    request_id = request.scope.get("state", {}).get("request_id", "unknown")
                    log_unexpected(request.scope, request_id)
                    return answer(request, ReelgateError("unexpected error"))

            return dialect_handler

    return DialectRoute
