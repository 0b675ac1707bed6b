"""What the fake upstreams share: fault switches set over HTTP, cut bodies, hung answers."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send


def update_switches(target: Any, changes: object) -> None:
    """Set the fields of the dataclass ``target`` named in the JSON object ``changes``.

    Only known fields, each of its declared kind (``int`` counters are at least 0,
    ``float`` takes any number, ``bool`` only true/false). Raises ``ValueError`` naming
    the first bad entry, and then changes nothing.
    """
    if not isinstance(changes, dict):
        raise ValueError("send a JSON object of fault names and values")
    kinds = {field.name: field.type for field in dataclasses.fields(target)}
    checked: dict[str, object] = {}
    for name, value in changes.items():
        kind = kinds.get(name)
        if kind is None:
            raise ValueError(f"unknown fault {name!r}; known: {', '.join(kinds)}")
        if kind in ("bool", bool):
            if not isinstance(value, bool):
                raise ValueError(f"{name} takes true or false")
        elif kind in ("int", int):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} takes an integer of 0 or more")
        elif kind in ("float", float):
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise ValueError(f"{name} takes a number of 0 or more")
            value = float(value)
        checked[name] = value
    for name, value in checked.items():
        setattr(target, name, value)


def take(target: Any, name: str) -> bool:
    """Consume one of the counter ``name`` of ``target``: True when it was above 0."""
    left: int = getattr(target, name)
    if left <= 0:
        return False
    setattr(target, name, left - 1)
    return True


async def hang(request: Request, seconds: float) -> None:
    """Sleep up to ``seconds``, or until the client hangs up (so that shutdown is quick)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if await request.is_disconnected():
            return
        await asyncio.sleep(0.05)


class CutResponse(Response):
    """Declares the whole body's length, sends half of it, then drops the connection.

    The ASGI server sees a response that never completed and closes the connection
    (it logs that as an error): the client reads fewer bytes than announced.
    """

    def __init__(self, body: bytes, media_type: str) -> None:
        super().__init__(body, media_type=media_type)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send(
            {"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers}
        )
        half = bytes(self.body[: len(self.body) // 2])
        await send({"type": "http.response.body", "body": half, "more_body": True})
