"""Running the API: the listening socket, uvicorn's options, several API processes.

``listen`` binds the port before anything else is printed, so that a busy port is a
clear error rather than a "serving at" line followed by a crash. ``run_processes``
serves the port from N forked processes (on Linux each with its own ``SO_REUSEPORT``
socket, so that the kernel spreads connections over them): process 0 is the one that
runs the embedded worker and announces the first key, the others only answer
requests. A parent process supervises them: it forwards SIGTERM and SIGINT,
replaces a process that dies after it started, and stops them all (exit 1) when one
dies at start. ``Peers`` carries the wake-up of a create in any process to the worker
of process 0 (SQLite has no LISTEN/NOTIFY).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Callable
from typing import Any

import uvicorn
from uvicorn.config import LOGGING_CONFIG

from reelgate.api.timeouts import timed_protocol
from reelgate.services.events import EventHub
from reelgate.settings import Settings

log = logging.getLogger("reelgate")

STARTUP_SECONDS = 10.0  # a process that dies sooner than this failed to start
BACKLOG = 2048  # uvicorn's default


class PortUnavailable(Exception):
    """The address cannot be listened on (in use, not ours, not an address here)."""


def listen(host: str, port: int, processes: int = 1) -> list[socket.socket]:
    """Sockets bound to ``host``:``port`` for ``processes`` API processes (not yet listening).

    One socket, bound as uvicorn binds it, for one process. For several on Linux, one
    socket per process with ``SO_REUSEPORT``, so that the kernel spreads connections
    evenly over the processes (with one shared socket, the first process to wake up
    accepts a whole burst of keep-alive connections); the port is first checked with
    a plain bind, so that a port already in use is still an error. Elsewhere, one
    socket that every process shares. Raises ``PortUnavailable`` with a message that
    says what to do.
    """
    first = _bind(host, port, reuse_port=False)
    if processes == 1 or not _SPREADS_CONNECTIONS:
        return [first]
    first.close()  # it only checked that nothing listens there
    sockets: list[socket.socket] = []
    try:
        for _ in range(processes):
            sockets.append(_bind(host, port, reuse_port=True))
    except PortUnavailable:
        for sock in sockets:
            sock.close()
        raise
    return sockets


_SPREADS_CONNECTIONS = sys.platform == "linux" and hasattr(socket, "SO_REUSEPORT")


def _bind(host: str, port: int, *, reuse_port: bool) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT is no obstacle
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        where = f"[{host}]:{port}" if family == socket.AF_INET6 else f"{host}:{port}"
        reason = exc.strerror or str(exc)
        hint = "choose another with --port (or REELGATE_PORT)"
        if exc.errno in (98, 48, 10048):  # EADDRINUSE on Linux, macOS, Windows
            hint = f"is another server running there? Stop it, or {hint}"
        raise PortUnavailable(f"cannot listen on {where}: {reason}; {hint}") from exc
    return sock


def uvicorn_config(app: Any, settings: Settings) -> uvicorn.Config:
    """The uvicorn options of ``reelgate serve`` (the benchmarks' bare ASGI app uses them too)."""
    return uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        # JSON logs: uvicorn's loggers pass their records to ours (logs.configure)
        log_config=None if settings.log_format == "json" else LOGGING_CONFIG,
        access_log=False,
        server_header=False,
        timeout_graceful_shutdown=30,
        timeout_keep_alive=settings.keep_alive,
        backlog=BACKLOG,
        http=timed_protocol(settings.header_timeout, settings.body_timeout),
    )


def serve(
    app: Any, settings: Settings, sock: socket.socket, *, hub: EventHub | None = None
) -> None:
    """Serve ``app`` on ``sock`` in this process until SIGTERM or SIGINT.

    ``hub``: the app's event streams, ended first when a graceful stop begins.
    """
    _Server(uvicorn_config(app, settings), hub).run(sockets=[sock])


class _Server(uvicorn.Server):
    """uvicorn's server; a graceful stop first ends the open event streams.

    uvicorn waits for open responses before it stops (up to its graceful timeout), and
    an event stream stays open until its task ends: without this, one open stream held
    a stop for 30 s. Streams end cleanly and clients resume with Last-Event-ID.
    """

    def __init__(self, config: uvicorn.Config, hub: EventHub | None) -> None:
        super().__init__(config)
        self._hub = hub

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        if self._hub is not None:
            self._hub.close()
        await super().shutdown(sockets)


class Peers:
    """Wake-ups between the API processes of one machine, over a non-blocking pipe.

    ``notify`` (any process, after a create) writes a byte; ``attach`` (the process
    with the worker) reads them and calls its wake-up. Bytes coalesce: a full pipe
    already means "wake up".
    """

    def __init__(self) -> None:
        self._read, self._write = os.pipe()
        os.set_blocking(self._read, False)
        os.set_blocking(self._write, False)

    def notify(self) -> None:
        with contextlib.suppress(BlockingIOError, BrokenPipeError):
            os.write(self._write, b"\0")

    def attach(self, wake: Callable[[], None]) -> None:
        """Call ``wake`` on the running loop whenever another process notifies."""

        def readable() -> None:
            with contextlib.suppress(BlockingIOError):
                while os.read(self._read, 4096):
                    pass
            wake()

        asyncio.get_running_loop().add_reader(self._read, readable)

    def detach(self) -> None:
        with contextlib.suppress(Exception):
            asyncio.get_running_loop().remove_reader(self._read)


def run_processes(
    count: int, target: Callable[[int], None], on_exit: Callable[[int], None] = lambda _: None
) -> int:
    """Run ``target(index)`` in ``count`` forked processes and supervise them.

    ``on_exit(pid)`` runs here for each process that exited (the metrics forget its
    live gauges).

    Returns the exit status for the command: 0 after SIGTERM/SIGINT, 1 when a process
    died at start (the others are stopped then). Call it before any thread or event
    loop exists in this process: the children are forks.
    """
    children: dict[int, tuple[int, float]] = {}  # pid -> (index, started)
    stopping = False

    def spawn(index: int) -> None:
        pid = os.fork()
        if pid == 0:  # the child: run, and never return into the parent's code
            status = 1
            try:
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                signal.signal(signal.SIGINT, signal.default_int_handler)
                target(index)
                status = 0
            except SystemExit as exc:
                status = exc.code if isinstance(exc.code, int) else 1
            except BaseException:
                log.exception("API process %d failed", index)
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(status)
        children[pid] = (index, time.monotonic())

    def stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True
        for pid in list(children):  # SIGTERM: uvicorn shuts down gracefully, once
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)

    for index in range(count):
        spawn(index)
    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    status = 0
    try:
        while children:
            try:
                pid, wait_status = os.waitpid(-1, 0)
            except ChildProcessError:
                break
            if pid not in children:
                continue  # not one of ours (cannot happen: we fork only these)
            index, started = children.pop(pid)
            code = os.waitstatus_to_exitcode(wait_status)
            on_exit(pid)
            if stopping:
                continue
            if time.monotonic() - started < STARTUP_SECONDS:
                log.error("API process %d exited at start (status %d); stopping", index, code)
                status = 1
                stop(signal.SIGTERM, None)
                continue
            log.warning("API process %d exited (status %d); starting another", index, code)
            spawn(index)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return status
