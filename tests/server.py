"""A real reelgate server on loopback, in a thread of the test process."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import uvicorn

from reelgate.api.app import create_app
from reelgate.ports import Renderer
from reelgate.settings import Settings
from reelgate.wiring import Components, build

T = TypeVar("T")


@dataclass
class LiveServer:
    """A running server: its URL, a key for owner ``alice``, and its components."""

    base_url: str
    api_key: str
    components: Components
    server: uvicorn.Server
    thread: threading.Thread
    loop: asyncio.AbstractEventLoop | None = None
    keys: dict[str, str] = field(default_factory=dict)

    @property
    def settings(self) -> Settings:
        return self.components.settings

    def call(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the server's event loop and return its result."""
        assert self.loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=30)

    def key_for(self, owner: str) -> str:
        """A bearer key of ``owner`` (made on first use)."""
        if owner not in self.keys:
            _, self.keys[owner] = self.call(self.components.keys.create(owner))
        return self.keys[owner]

    def headers(self, owner: str = "alice") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key_for(owner)}"}

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=60)


def start_server(
    data_dir: Path, *, renderers: dict[str, Renderer] | None = None, **settings: Any
) -> LiveServer:
    """Start a server on a free loopback port and wait until it answers."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    options: dict[str, Any] = {"data_dir": data_dir, "port": port, "workers": 2}
    options.update(settings)
    components = build(Settings(**options), renderers=renderers)
    ready = threading.Event()
    live: dict[str, LiveServer] = {}

    async def on_ready(c: Components) -> None:
        live["server"].loop = asyncio.get_running_loop()
        _, live["server"].keys["alice"] = await c.keys.create("alice")
        ready.set()

    app = create_app(components, on_ready=on_ready)
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    live["server"] = LiveServer(f"http://127.0.0.1:{port}", "", components, server, thread)
    thread.start()
    if not ready.wait(timeout=60):
        raise RuntimeError("the test server did not start")
    while not server.started:
        threading.Event().wait(0.01)
    result = live["server"]
    result.api_key = result.keys["alice"]
    return result
