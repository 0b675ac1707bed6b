"""The HTTP side of the stand-in server: routing, form parsing, ranges, and cut connections.

The handler reaches the server's state through ``self.server.app`` (a
``fakeserver.FakeServer``).
"""

from __future__ import annotations

import json
import secrets
import socket
import time
from dataclasses import dataclass, field
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qsl

_FAULTS = {
    408: ("request timeout", "request_timeout"),
    429: ("too many requests", "rate_limited"),
    500: ("internal error", "internal_error"),
    502: ("bad gateway", "bad_gateway"),
    503: ("service unavailable", "service_unavailable"),
    504: ("gateway timeout", "gateway_timeout"),
}


class ContractError(Exception):
    """An error answer in CometAPI's envelope."""

    def __init__(self, status: int, message: str, code: str, param: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.code, self.param = status, message, code, param


@dataclass
class Reply:
    """An answer to send; ``cut`` sends only half of ``body`` and drops the connection."""

    status: int
    body: bytes
    content_type: str
    headers: dict[str, str] = field(default_factory=dict)
    cut: bool = False


def reply_json(status: int, data: Any, headers: dict[str, str] | None = None) -> Reply:
    """A JSON answer."""
    return Reply(status, json.dumps(data).encode(), "application/json", headers or {})


def reply_error(exc: ContractError, headers: dict[str, str] | None = None) -> Reply:
    """An answer in CometAPI's error envelope."""
    kind = "invalid_request_error" if exc.status < 500 else "server_error"
    envelope = {"message": exc.message, "type": kind, "param": exc.param, "code": exc.code}
    return reply_json(exc.status, {"error": envelope}, headers)


def fault(status: int, headers: dict[str, str]) -> Reply:
    """The answer to an injected failure."""
    message, code = _FAULTS.get(status, ("injected failure", "injected"))
    return reply_error(ContractError(status, message, code), headers)


def parse_form(
    content_type: str, body: bytes
) -> tuple[dict[str, str], tuple[str, str, bytes] | None]:
    """``(fields, image)`` from a multipart, urlencoded or JSON body."""
    if content_type.startswith("multipart/form-data"):
        head = f"Content-Type: {content_type}\r\n\r\n".encode()
        message = BytesParser(policy=HTTP).parsebytes(head + body)
        fields: dict[str, str] = {}
        image = None
        for part in message.iter_parts():
            name = part.get_param("name", header="content-disposition")
            payload = part.get_payload(decode=True)
            assert isinstance(payload, bytes)
            filename = part.get_filename()
            if filename is not None and name == "input_reference":
                image = (filename, part.get_content_type(), payload)
            elif isinstance(name, str):
                fields[name] = payload.decode()
        return fields, image
    if content_type.startswith("application/json"):
        data = json.loads(body or b"{}")
        return {key: str(value) for key, value in data.items() if value is not None}, None
    return dict(parse_qsl(body.decode())), None


def file_reply(video: bytes, etag: str, headers: Any, cut: bool) -> Reply:
    """The MP4, whole (200) or from a ``Range: bytes=N-`` (206), honouring ``If-Range``."""
    total = len(video)
    spec = headers.get("Range", "")
    if_range = headers.get("If-Range")
    start = 0
    if spec.startswith("bytes=") and (if_range is None or if_range == etag):
        first = spec.removeprefix("bytes=").partition("-")[0]
        start = int(first) if first.isdigit() else 0
    base = {"ETag": etag, "Accept-Ranges": "bytes"}
    if start >= total > 0:
        return Reply(416, b"", "video/mp4", {**base, "Content-Range": f"bytes */{total}"})
    if start:
        base["Content-Range"] = f"bytes {start}-{total - 1}/{total}"
        return Reply(206, video[start:], "video/mp4", base, cut)
    return Reply(200, video, "video/mp4", base, cut)


class Handler(BaseHTTPRequestHandler):
    """Routes ``/v1/videos``, ``/v1/videos/{id}`` and the signed ``/files/...`` URLs."""

    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_HEAD(self) -> None:
        self._dispatch("HEAD")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def _dispatch(self, method: str) -> None:
        app = self.server.app  # type: ignore[attr-defined]
        entry = app.record(method, self.path, dict(self.headers.items()))
        request_id = "req_" + secrets.token_hex(8)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        try:
            reply = self._route(app, method, body)
        except ContractError as exc:
            reply = reply_error(exc)
        except Exception:
            message = f"internal error (request id {request_id})"
            reply = reply_error(ContractError(500, message, "internal_error"))
        entry.status = reply.status
        self._send(reply, request_id, head_only=method == "HEAD")

    def _route(self, app: Any, method: str, body: bytes) -> Reply:
        path = self.path.split("?", 1)[0]
        if path.startswith("/files/") and method in {"GET", "HEAD"}:
            injected = app.take_failure("file")
            if injected is not None:
                return fault(*injected)
            app.check_signature(self.path)
            return file_reply(app.video, app.etag, self.headers, cut=app.take_cut())
        if not path.startswith("/v1/"):
            raise ContractError(404, f"no route {method} {path}", "not_found")
        if app.stall_seconds:
            time.sleep(app.stall_seconds)
        injected = app.take_failure("api")
        if injected is not None:
            return fault(*injected)
        owner = app.owner(self.headers.get("Authorization"))
        if path == "/v1/videos" and method == "POST":
            fields, image = parse_form(self.headers.get("Content-Type", ""), body)
            return reply_json(200, app.body(app.create(owner, fields, image)))
        if path.startswith("/v1/videos/") and method == "GET":
            task = app.advance(owner, path.removeprefix("/v1/videos/"))
            hints = {}
            if app.poll_after_ms is not None:
                hints["openai-poll-after-ms"] = str(app.poll_after_ms)
            return reply_json(200, app.body(task), hints)
        raise ContractError(404, f"no route {method} {path}", "not_found")

    def _send(self, reply: Reply, request_id: str, *, head_only: bool) -> None:
        self.send_response(reply.status)
        self.send_header("Content-Type", reply.content_type)
        self.send_header("Content-Length", str(len(reply.body)))
        self.send_header("X-Request-Id", request_id)
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.end_headers()
        if head_only:
            return
        if not reply.cut:
            self.wfile.write(reply.body)
            return
        self.wfile.write(reply.body[: len(reply.body) // 2])
        self.wfile.flush()
        self.close_connection = True
        self.connection.shutdown(socket.SHUT_RDWR)
