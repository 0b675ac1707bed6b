"""What the fake upstreams share: control routes, fault switches, cut bodies, hung answers."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
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


def control_routes(fake: Any) -> list[Route]:
    """The routes that steer a fake from a test: ``/_fake/faults``, ``stats``, ``reset``
    and ``clock`` (``fake`` has ``faults``, ``stats()``, ``reset()``, ``now()`` and
    ``offset``)."""

    async def faults(request: Request) -> Response:
        if request.method == "POST":
            try:
                update_switches(fake.faults, await request.json())
            except ValueError as exc:
                return JSONResponse({"error": str(exc)}, 400)
        return JSONResponse(dataclasses.asdict(fake.faults))

    async def stats(request: Request) -> Response:
        return JSONResponse(fake.stats())

    async def reset(request: Request) -> Response:
        fake.reset()
        return JSONResponse({"reset": True})

    async def clock(request: Request) -> Response:
        try:
            body = await request.json()
            advance = float(body.get("advance", 0)) if isinstance(body, dict) else -1.0
        except (ValueError, TypeError):
            advance = -1.0
        if advance < 0:
            return JSONResponse({"error": 'send {"advance": seconds}, 0 or more'}, 400)
        fake.offset += advance
        return JSONResponse({"now": fake.now(), "offset": fake.offset})

    return [
        Route("/_fake/faults", faults, methods=["GET", "POST"]),
        Route("/_fake/stats", stats, methods=["GET"]),
        Route("/_fake/reset", reset, methods=["POST"]),
        Route("/_fake/clock", clock, methods=["POST"]),
    ]
