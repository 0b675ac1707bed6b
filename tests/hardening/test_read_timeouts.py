"""Slow clients cannot hold connections: header and body read timeouts, on a real socket."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from reelgate.api.timeouts import TimedHttpProtocol, timed_protocol
from tests.upstreams import RunningFake, start_fake


async def echo(request: Request) -> PlainTextResponse:
    return PlainTextResponse(f"{len(await request.body())} bytes")


@pytest.fixture
def server() -> Iterator[RunningFake]:
    app = Starlette(routes=[Route("/", echo, methods=["GET", "POST"])])
    running = start_fake(app, http=timed_protocol(header_timeout=0.5, body_timeout=0.5))
    yield running
    running.stop()


def connect(server: RunningFake) -> socket.socket:
    host, port = server.base_url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=10)
    return sock


def closed_within(sock: socket.socket, seconds: float) -> float:
    """How long until the server closed ``sock`` (its answer, if any, is read first)."""
    started = time.monotonic()
    while sock.recv(65536):
        pass
    took = time.monotonic() - started
    assert took < seconds
    return took


def test_a_request_that_never_sends_headers_is_closed(server: RunningFake) -> None:
    with connect(server) as sock:
        closed_within(sock, 5)


def test_headers_sent_slowly_are_cut_off(server: RunningFake) -> None:
    with connect(server) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")  # never the blank line
        closed_within(sock, 5)


def test_a_body_that_stops_arriving_is_cut_off(server: RunningFake) -> None:
    with connect(server) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nab")
        closed_within(sock, 5)


def test_prompt_clients_are_served_and_kept_alive(server: RunningFake) -> None:
    with connect(server) as sock:
        for _ in range(2):
            sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc")
            assert b"3 bytes" in sock.recv(65536)
            time.sleep(0.8)  # idle between requests: the keep-alive timeout's to judge


def test_reelgate_serve_uses_the_timeouts_of_its_settings() -> None:
    from reelgate.api.server import uvicorn_config
    from reelgate.settings import Settings

    settings = Settings(data_dir="unused", header_timeout=3, body_timeout=7)
    config = uvicorn_config(object(), settings)
    assert isinstance(config.http, type) and issubclass(config.http, TimedHttpProtocol)
    assert (config.http.header_timeout, config.http.body_timeout) == (3, 7)
