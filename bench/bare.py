"""The read path's ceiling: a bare ASGI app under reelgate's own uvicorn settings.

It answers every HTTP request with the same fixed bytes (a retrieve's JSON body, read
from a file) and the same two headers the retrieve sends (``content-length``,
``content-type``), with no routing, no middleware, no auth and no store: what uvicorn
itself costs per request on this machine. It listens and runs exactly as
``reelgate serve`` does (``reelgate.api.server``: the same socket, the same
``uvicorn.Config``, the same supervisor for several processes), so that the ratio
of a reelgate route to it is the share of the server's time the route leaves to
uvicorn.

Run alone: ``python -m bench.bare --port 8001 [--processes 2] [--body-file body.json]``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
from starlette.types import ASGIApp, Receive, Scope, Send

from bench.servers import Server, free_port
from reelgate.api import server
from reelgate.settings import Settings

DEFAULT_BODY = b'{"id":"task_bare","object":"video","status":"SUCCESS","progress":100}'


def bare_app(body: bytes) -> ASGIApp:
    """An ASGI app that answers ``body`` as JSON to every request."""
    headers = [(b"content-length", b"%d" % len(body)), (b"content-type", b"application/json")]

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    return app


def main() -> None:
    """Serve the bare app like ``reelgate serve`` would (its settings from flags and env)."""
    parser = argparse.ArgumentParser(prog="python -m bench.bare", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--processes", type=int, default=1, help="API processes [1]")
    parser.add_argument("--body-file", type=Path, default=None, help="the bytes to answer")
    args = parser.parse_args()
    body = args.body_file.read_bytes() if args.body_file else DEFAULT_BODY
    settings = Settings(host=args.host, port=args.port, log_level="warning")
    sockets = server.listen(settings.host, settings.port, args.processes)
    app = bare_app(body)
    if args.processes == 1:
        server.serve(app, settings, sockets[0])
        return

    def run(index: int) -> None:
        server.serve(app, settings, sockets[index % len(sockets)])

    sys.exit(server.run_processes(args.processes, run))


@contextlib.contextmanager
def running_bare(
    workdir: Path, body: bytes, *, processes: int = 1, timeout: float = 30.0
) -> Iterator[Server]:
    """Start ``python -m bench.bare`` answering ``body``; stop it on exit."""
    port = free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    body_file = workdir / "body.json"
    body_file.write_bytes(body)
    log = workdir / "bare.log"
    command = [sys.executable, "-m", "bench.bare", "--port", str(port)]
    command += ["--processes", str(processes), "--body-file", str(body_file)]
    env = {name: value for name, value in os.environ.items() if not name.startswith("REELGATE_")}
    with log.open("ab") as out:
        process = subprocess.Popen(
            command,
            cwd=Path(__file__).resolve().parent.parent,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
            start_new_session=True,
        )
    bare = Server(process, f"http://127.0.0.1:{port}", workdir, log)
    try:
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"the bare ASGI server exited at start:\n{bare.log_tail()}")
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(bare.url + "/", timeout=2).content == body:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"the bare ASGI server did not answer:\n{bare.log_tail()}")
            time.sleep(0.05)
        yield bare
    finally:
        bare.stop()


if __name__ == "__main__":
    main()
