"""Read timeouts uvicorn lacks: for a request's headers, and between pieces of its body.

uvicorn closes idle keep-alive connections, but a client that opens a connection and
sends its headers slowly (or never) holds it, and a server task, for good. This
protocol (uvicorn's httptools one, extended) closes a connection whose headers are
not complete ``header_timeout`` seconds after it opened or after its request began,
and one whose body stops arriving for ``body_timeout`` seconds. A body that waits
because the application has not read it yet (flow control paused reading) is not the
client's fault and is not timed out.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class TimedHttpProtocol(HttpToolsProtocol):
    """``HttpToolsProtocol`` with header and body read timeouts (class attributes)."""

    header_timeout = 10.0
    body_timeout = 30.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._read_timer: asyncio.TimerHandle | None = None

    def _arm(self, seconds: float) -> None:
        self._disarm()
        self._read_timer = self.loop.call_later(seconds, self._too_slow)

    def _disarm(self) -> None:
        if self._read_timer is not None:
            self._read_timer.cancel()
            self._read_timer = None

    def _too_slow(self) -> None:
        self._read_timer = None
        if self.flow is not None and self.flow.read_paused:  # waiting on us, not the client
            self._arm(self.body_timeout)
            return
        if not self.transport.is_closing():
            self.transport.close()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm(self.header_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm(self.header_timeout)

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        self._arm(self.body_timeout)

    def on_body(self, body: bytes) -> None:
        super().on_body(body)
        self._arm(self.body_timeout)

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._disarm()


def timed_protocol(header_timeout: float, body_timeout: float) -> type[TimedHttpProtocol]:
    """The protocol class for ``uvicorn.Config(http=...)`` with these timeouts."""
    return type(
        "TimedHttpProtocol",
        (TimedHttpProtocol,),
        {"header_timeout": header_timeout, "body_timeout": body_timeout},
    )
