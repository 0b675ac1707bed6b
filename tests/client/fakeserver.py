"""A stand-in reelgate server for the client tests: real HTTP on 127.0.0.1, in a thread.

It speaks the wire contract of ``shared/API.md`` (create -> SUBMITTED, retrieve
with rising progress, SUCCESS with a signed ``video_url``, the error envelope
with ``X-Request-Id``, 401, 400 ``task_not_exist``, 429 with ``Retry-After``,
5xx), and injects the faults a real server will not produce on demand:

- ``fail_next(status, ...)``: the next API (or file) requests answer an error;
- ``cut_next_downloads(n)``: the next file responses send their headers with the
  full ``Content-Length``, half the body, then drop the connection;
- ``expire_urls()``: every signed URL issued so far is refused with 403.

A prompt containing ``[fail]`` or ``[error]`` ends FAILED or ERROR.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import secrets
import struct
import threading
import time
import zlib
from dataclasses import dataclass, field
from http.server import ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from fakeserver_http import ContractError, Handler

SIZES = {"21:9", "16:9", "4:3", "1:1", "3:4", "9:16"}
CATALOG: dict[str, tuple[int, int, set[str], bool]] = {
    "doubao-seedance-2-0": (4, 15, {"480p", "720p"}, True),
    "doubao-seedance-2-0-fast": (4, 15, {"480p", "720p"}, True),
    "doubao-seedance-1-5-pro": (4, 12, {"480p", "720p", "1080p"}, False),
    "doubao-seedance-1-0-pro": (2, 10, {"480p", "720p", "1080p"}, False),
}
IMAGE_TYPES = {"image/jpeg", "image/png", "image/webp"}


@dataclass
class Logged:
    """One request as the server saw it."""

    method: str
    path: str
    headers: dict[str, str]
    status: int = 0
    at: float = field(default_factory=time.monotonic)


@dataclass
class Task:
    """A task in the stand-in's memory."""

    id: str
    owner: str
    model: str
    fields: dict[str, str]
    image: tuple[str, str, bytes] | None = None
    status: str = "SUBMITTED"
    progress: int = 0
    polls: int = 0
    created_at: int = field(default_factory=lambda: int(time.time()))
    completed_at: int | None = None
    error: dict[str, str] | None = None


class FakeServer:
    """The stand-in server; ``with FakeServer() as server:`` starts it on a free port."""

    def __init__(self, *, api_key: str = "rg-test-key", steps: int = 3) -> None:
        self.api_key = api_key
        self.keys = {api_key: "owner-a", "rg-other-key": "owner-b"}
        self.steps = steps
        self.poll_after_ms: int | None = None
        self.url_ttl = 3600
        self.video = make_mp4()
        self.etag = '"' + hashlib.sha256(self.video).hexdigest()[:32] + '"'
        self.tasks: dict[str, Task] = {}
        self.log: list[Logged] = []
        self._failures: list[tuple[str, int, dict[str, str]]] = []
        self._cuts = 0
        self._expire_on_cut = False
        self.stall_seconds = 0.0
        self._serial = 0
        self._valid_from = 0
        self._secret = secrets.token_bytes(32)
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._httpd.app = self  # type: ignore[attr-defined]
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self.base_url = f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def __enter__(self) -> FakeServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    # --- knobs -----------------------------------------------------------------

    def fail_next(
        self,
        status: int,
        *,
        count: int = 1,
        route: str = "api",
        headers: dict[str, str] | None = None,
    ) -> None:
        """Make the next ``count`` requests on ``route`` ("api" or "file") answer ``status``."""
        with self._lock:
            self._failures.extend([(route, status, headers or {})] * count)

    def cut_next_downloads(self, count: int = 1, *, then_expire: bool = False) -> None:
        """Drop the connection half-way through the next ``count`` file responses.

        ``then_expire``: the signed URLs expire right after each cut.
        """
        with self._lock:
            self._cuts += count
            self._expire_on_cut = then_expire

    def stall(self, seconds: float) -> None:
        """Answer every API request only after ``seconds`` (0: at once again)."""
        self.stall_seconds = seconds

    def expire_urls(self) -> None:
        """Refuse (403) every signed URL issued so far."""
        with self._lock:
            self._valid_from = self._serial + 1

    def record(self, method: str, path: str, headers: dict[str, str]) -> Logged:
        """Log a request (its status is filled in when answered)."""
        entry = Logged(method, path, headers)
        with self._lock:
            self.log.append(entry)
        return entry

    def key_for(self, owner: str) -> str:
        """A key of another owner than ``api_key``'s (the stand-in knows two)."""
        return "rg-other-key" if self.keys[self.api_key] != owner else self.api_key

    def requests_to(self, prefix: str) -> list[Logged]:
        """The logged requests whose path starts with ``prefix``."""
        return [entry for entry in self.log if entry.path.startswith(prefix)]

    # --- dispatch (called by the handler thread) -----------------------------------

    def take_failure(self, route: str) -> tuple[int, dict[str, str]] | None:
        with self._lock:
            for index, (where, status, headers) in enumerate(self._failures):
                if where == route:
                    del self._failures[index]
                    return status, headers
        return None

    def take_cut(self) -> bool:
        with self._lock:
            if not self._cuts:
                return False
            self._cuts -= 1
            if self._expire_on_cut:
                self._valid_from = self._serial + 1
            return True

    def owner(self, authorization: str | None) -> str:
        if not authorization:
            raise ContractError(401, "missing bearer token", "invalid_api_key")
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise ContractError(401, "malformed bearer token", "invalid_api_key")
        if token.strip() not in self.keys:
            raise ContractError(401, "invalid api key", "invalid_api_key")
        return self.keys[token.strip()]

    def create(
        self, owner: str, form: dict[str, str], image: tuple[str, str, bytes] | None
    ) -> Task:
        prompt, model = form.get("prompt", "").strip(), form.get("model", "").strip()
        if not prompt:
            raise ContractError(400, "prompt is required", "MissingParameter", "prompt")
        if not model:
            raise ContractError(400, "model is required", "MissingParameter", "model")
        if model not in CATALOG:
            allowed = ", ".join(sorted(CATALOG))
            raise ContractError(400, f"model must be one of {allowed}", "InvalidParameter", "model")
        low, high, resolutions, takes_image = CATALOG[model]
        seconds = form.get("seconds", "5")
        if not seconds.isdigit() or not low <= int(seconds) <= high:
            message = f"seconds must be an integer from {low} to {high}"
            raise ContractError(400, message, "InvalidParameter", "seconds")
        if form.get("size", "16:9") not in SIZES:
            message = f"size must be one of {', '.join(sorted(SIZES))}"
            raise ContractError(400, message, "InvalidParameter", "size")
        if form.get("resolution", "720p") not in resolutions:
            message = f"resolution must be one of {', '.join(sorted(resolutions))}"
            raise ContractError(400, message, "InvalidParameter", "resolution")
        if image is not None and not takes_image:
            message = f"the specified task_type r2v does not support model {model}"
            raise ContractError(400, message, "InvalidParameter", "input_reference")
        if image is not None and image[1] not in IMAGE_TYPES:
            message = "input_reference must be a JPEG, PNG or WebP image"
            raise ContractError(400, message, "InvalidParameter", "input_reference")
        task = Task("task_" + secrets.token_hex(16), owner, model, dict(form), image)
        with self._lock:
            self.tasks[task.id] = task
        return task

    def advance(self, owner: str, task_id: str) -> Task:
        with self._lock:
            task = self.tasks.get(task_id)
            if task is None or task.owner != owner:
                raise ContractError(400, "task_not_exist", "task_not_exist")
            if task.status in {"SUBMITTED", "IN_PROGRESS"}:
                task.polls += 1
                self._step(task)
            return task

    def _step(self, task: Task) -> None:
        prompt = task.fields.get("prompt", "")
        if task.polls < self.steps:
            task.status = "IN_PROGRESS"
            task.progress = max(task.progress, task.polls * 100 // self.steps)
            return
        task.completed_at = int(time.time())
        if "[fail]" in prompt:
            task.status = "FAILED"
            task.error = {"code": "content_rejected", "message": "the prompt was rejected"}
        elif "[error]" in prompt:
            task.status = "ERROR"
            task.error = {"code": "render_error", "message": "the renderer crashed"}
        else:
            task.status, task.progress = "SUCCESS", 100

    def body(self, task: Task) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": task.id,
            "task_id": task.id,
            "object": "video",
            "model": task.model,
            "status": task.status,
            "progress": task.progress,
            "created_at": task.created_at,
            "completed_at": task.completed_at,
        }
        if task.status == "SUCCESS":
            data["video_url"], data["expires_at"] = self.sign(task.id)
        if task.error is not None:
            data["error"] = task.error
        return data

    def sign(self, task_id: str) -> tuple[str, int]:
        with self._lock:
            self._serial += 1
            serial = self._serial
        expires = int(time.time()) + self.url_ttl
        path = f"/files/{task_id}.mp4"
        query = f"expires={expires}&n={serial}"
        signature = hmac.new(self._secret, f"{path}?{query}".encode(), "sha256").hexdigest()
        return f"{self.base_url}{path}?{query}&sig={signature}", expires

    def check_signature(self, target: str) -> str:
        parts = urlsplit(target)
        query, _, signature = parts.query.rpartition("&sig=")
        expected = hmac.new(self._secret, f"{parts.path}?{query}".encode(), "sha256").hexdigest()
        params = dict(item.split("=", 1) for item in query.split("&") if "=" in item)
        fresh = int(params.get("n", "0")) >= self._valid_from
        alive = int(params.get("expires", "0")) >= time.time()
        if not (hmac.compare_digest(signature, expected) and fresh and alive):
            raise ContractError(403, "the signed URL has expired or is invalid", "forbidden")
        task_id = parts.path.removeprefix("/files/").removesuffix(".mp4")
        task = self.tasks.get(task_id)
        if task is None or task.status != "SUCCESS":
            raise ContractError(404, "not found", "not_found")
        return task_id


def make_mp4(frames: int = 24, size: int = 64) -> bytes:
    """A small real H.264 MP4 (yuv420p), or stand-in bytes where PyAV is missing."""
    try:
        import av
    except ImportError:
        return b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 64
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=24)
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        for index in range(frames):
            image = av.VideoFrame(size, size, "rgb24")
            for plane in image.planes:
                plane.update(bytes([(index * 10) % 256]) * plane.buffer_size)
            for packet in stream.encode(image.reformat(format="yuv420p")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return buffer.getvalue()


def tiny_png(width: int = 16, height: int = 16, rgb: tuple[int, int, int] = (200, 40, 40)) -> bytes:
    """A valid PNG of one colour, made without Pillow."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    rows = b"".join(b"\x00" + bytes(rgb) * width for _ in range(height))
    signature = b"\x89PNG\r\n\x1a\n"
    return (
        signature
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )
