"""A webhook receiver on loopback that records what arrives and answers as told."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from starlette.types import Receive, Scope, Send

from tests.upstreams import RunningFake, start_fake


@dataclass
class Received:
    """One request as it arrived: path, headers (lower-case names) and body."""

    path: str
    headers: dict[str, str]
    body: bytes
    at: float


@dataclass
class Receiver:
    """An ASGI app: each POST is recorded, then answered by the next planned reply.

    A reply is an HTTP status, or ``("sleep", seconds)`` to answer 200 only after
    ``seconds`` (longer than the sender's timeout: no answer), or ``("redirect", url)``.
    When the plan runs out, ``default`` answers.
    """

    plan: list[Any] = field(default_factory=list)
    default: int = 200
    received: list[Received] = field(default_factory=list)
    _lock: threading.Condition = field(default_factory=threading.Condition)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        assert scope["type"] == "http"
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        with self._lock:
            reply = self.plan.pop(0) if self.plan else self.default
            self.received.append(Received(scope["path"], headers, body, time.time()))
            self._lock.notify_all()
        status, extra = 200, []
        if isinstance(reply, tuple) and reply[0] == "sleep":
            await asyncio.sleep(reply[1])
        elif isinstance(reply, tuple) and reply[0] == "redirect":
            status, extra = 302, [(b"location", reply[1].encode())]
        else:
            status = int(reply)
        await send({"type": "http.response.start", "status": status, "headers": extra})
        await send({"type": "http.response.body", "body": b"ok"})

    def wait_for(self, test: Callable[[list[Received]], bool], timeout: float = 30.0) -> None:
        """Block until ``test(received)`` holds; fail after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while not test(self.received):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"receiver: condition not met; got {self.received}")
                self._lock.wait(left)


def start_receiver(**options: Any) -> tuple[Receiver, RunningFake]:
    """A ``Receiver`` served on a free loopback port."""
    receiver = Receiver(**options)
    return receiver, start_fake(receiver)


def wait_until(check: Callable[[], bool], timeout: float = 30.0, what: str = "") -> None:
    """Poll ``check`` until it holds (the real condition), or fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or check}")
        time.sleep(0.02)
