"""Fake upstream servers on loopback, in a thread of the test process.

``start_fake(app)`` serves any ASGI app (``fake_ark_app(...)``, a fake CometAPI, …) with
uvicorn on a free port of 127.0.0.1 and returns a ``RunningFake``: its base URL, and
small helpers for the fakes' ``/_fake/`` control routes (faults, stats, reset, clock).
Use it as a context manager, or call ``stop()``.
"""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import httpx
import uvicorn
from starlette.types import ASGIApp


@dataclass
class RunningFake:
    """A fake upstream that answers on ``base_url`` (``http://127.0.0.1:PORT``)."""

    base_url: str
    app: ASGIApp
    server: uvicorn.Server
    thread: threading.Thread
    _http: httpx.Client = field(default_factory=lambda: httpx.Client(timeout=10, trust_env=False))

    def url(self, path: str) -> str:
        return f"{self.base_url}/{path.lstrip('/')}"

    def control(self, method: str, path: str, body: object = None) -> Any:
        """Call a control route (``/_fake/…``) and return its JSON; raise on an error."""
        response = self._http.request(method, self.url(path), json=body)
        response.raise_for_status()
        return response.json()

    def faults(self, **changes: object) -> dict[str, Any]:
        """Set the named faults (``POST /_fake/faults``); return them all."""
        result: dict[str, Any] = self.control("POST", "/_fake/faults", changes)
        return result

    def stats(self) -> dict[str, Any]:
        result: dict[str, Any] = self.control("GET", "/_fake/stats")
        return result

    def reset(self) -> None:
        self.control("POST", "/_fake/reset", {})

    def advance(self, seconds: float) -> None:
        """Move the fake's clock forward (``POST /_fake/clock``)."""
        self.control("POST", "/_fake/clock", {"advance": seconds})

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)
        self._http.close()

    def __enter__(self) -> RunningFake:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.stop()


def free_port() -> int:
    """A loopback port that nothing listens on (closed again at once)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def start_fake(app: ASGIApp, *, timeout: float = 30.0, **options: Any) -> RunningFake:
    """Serve ``app`` on a free loopback port and wait until it listens.

    ``options`` go to ``uvicorn.Config`` (e.g. ``http=`` a protocol class).
    """
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        app,
        log_level="warning",
        access_log=False,
        lifespan="off",
        timeout_graceful_shutdown=1,
        **options,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name=f"fake-{port}", daemon=True
    )
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the fake upstream did not start")
        time.sleep(0.01)
    return RunningFake(f"http://127.0.0.1:{port}", app, server, thread)
