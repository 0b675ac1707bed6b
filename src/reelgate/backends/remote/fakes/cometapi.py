"""A fake CometAPI (or, with ``dialect="openai"``, OpenAI Videos API) upstream.

One ASGI app, ``fake_cometapi_app(settings)``, speaks either dialect of ``/v1/videos``:

==========================================  ======================================
CometAPI (``dialect="cometapi"``)           OpenAI (``dialect="openai"``)
==========================================  ======================================
``POST /v1/videos`` multipart, form or JSON  the same; ``size`` in pixels (``1280x720``)
``{"id", "task_id", "status": "SUBMITTED"}``  ``{"id": "video_…", "status": "queued"}``
statuses SUBMITTED, IN_PROGRESS, SUCCESS,   queued, in_progress, completed, failed
FAILED, ERROR (``lowercase``: queued, …)
``video_url`` on SUCCESS: a signed link to  ``GET /v1/videos/{id}/content`` (the key)
``/_fake/videos/{id}.mp4``, 403 once expired  404 once expired
unknown id: 400 ``task_not_exist``          unknown id: 404
no cancel route (404)                       ``DELETE /v1/videos/{id}``
==========================================  ======================================

Every ``/v1`` route wants ``Authorization: Bearer <key>`` (401 in the error envelope
otherwise). A task's run time is uniform in ``[min_seconds, max_seconds]``; its state is
read off the clock (no work runs): queued for the first ``queue_fraction`` of it, then
in progress with ``progress`` rising, then done. The video is a small real H.264 MP4 of
``seconds`` at 24 fps (``clips``). The signed link's query string is compared exactly
with the one issued, so a client that re-encodes it gets 403.

Prompt markers: ``[[fake:refuse]]`` (400 at create, a content policy code),
``[[fake:fail]]`` (ends FAILED / failed with a content code), ``[[fake:error]]`` (ends
ERROR / failed with ``internal_error``).

Control routes (no key): ``GET|POST /_fake/faults`` (JSON of ``FakeCometFaults`` fields,
partial updates), ``GET /_fake/stats``, ``POST /_fake/reset`` (tasks, counters and faults
back to the settings'), ``POST /_fake/clock`` ``{"advance": seconds}``.

Run by hand::

    python -m reelgate.backends.remote.fakes.cometapi --port 9200 [--dialect openai] \\
        [--key KEY] [--min-seconds 5] [--max-seconds 20] [--faults '{"create_429": 2}']
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import dataclasses
import hashlib
import hmac
import json
import os
import random
import re
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import quote

from starlette.applications import Starlette
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from reelgate.backends.remote.fakes.clips import clip
from reelgate.backends.remote.fakes.common import (
    CutResponse,
    control_routes,
    hang,
    take,
    update_switches,
)

Dialect = Literal["cometapi", "openai"]
REFUSE, FAIL, ERROR = "[[fake:refuse]]", "[[fake:fail]]", "[[fake:error]]"
RATIOS = ("21:9", "16:9", "4:3", "1:1", "3:4", "9:16")
RESOLUTIONS = ("480p", "720p", "1080p")
_PIXELS = re.compile(r"([1-9]\d{1,4})x([1-9]\d{1,4})")
_COMET = {
    "queued": "SUBMITTED",
    "running": "IN_PROGRESS",
    "succeeded": "SUCCESS",
    "failed": "FAILED",
    "error": "ERROR",
}
_LOWER = {
    "queued": "queued",
    "running": "in_progress",
    "succeeded": "completed",
    "failed": "failed",
    "error": "error",
}
_OPENAI = {**_LOWER, "error": "failed"}


@dataclass
class FakeCometFaults:
    """Faults to inject; counters are consumed one per matching request."""

    create_429: int = 0  # next N creates: 429 (with Retry-After)
    create_500: int = 0  # next N creates: 500
    create_503: int = 0  # next N creates: 503
    retry_after: int = 2  # the Retry-After of a 429, in seconds
    create_hang: int = 0  # next N creates: recorded, then no answer for hang_seconds
    hang_seconds: float = 30.0
    get_429: int = 0  # next N video GETs: 429
    get_500: int = 0  # next N video GETs: 500
    get_malformed: int = 0  # next N video GETs: 200 with a body that is not JSON
    download_cut: int = 0  # next N downloads: half the body, then the connection drops
    outage: bool = False  # every /v1 route answers 503 while true
    lowercase: bool = False  # CometAPI dialect: statuses in lower case (a quirk seen live)


@dataclass(frozen=True)
class FakeCometSettings:
    """How the fake behaves; ``faults`` are the ones it starts (and resets) with."""

    dialect: Dialect = "cometapi"
    api_keys: tuple[str, ...] = ("fake-comet-key",)
    min_seconds: float = 5.0  # a task's run time is uniform in [min_seconds, max_seconds]
    max_seconds: float = 20.0
    queue_fraction: float = 0.2  # the share of the run time spent queued
    seed: int | None = None  # seeds run times, for repeatable runs
    url_ttl: float = 24 * 3600.0  # how long a video stays downloadable after it ends
    max_video_seconds: int = 20  # ``seconds`` above this (or below 1) is refused
    public_url: str | None = None  # the base of video URLs; default: the request's host
    faults: FakeCometFaults = field(default_factory=FakeCometFaults)


@dataclass
class _Task:
    id: str
    model: str
    prompt: str
    seconds: int
    size: str
    ratio: str
    resolution: str
    created: float
    started: float
    ended: float
    outcome: str  # succeeded, failed or error

    def state(self, now: float) -> str:
        if now < self.started:
            return "queued"
        if now < self.ended:
            return "running"
        return self.outcome

    def progress(self, now: float) -> int:
        state = self.state(now)
        if state == "queued":
            return 0
        if state == "running":
            share = (now - self.created) / max(self.ended - self.created, 1e-9)
            return max(1, min(99, int(share * 100)))
        return 100


class FakeComet:
    """The fake's state: tasks, faults, counters and its clock."""

    def __init__(self, settings: FakeCometSettings, clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.openai = settings.dialect == "openai"
        self._wall = clock
        self._bearers = {f"Bearer {key}" for key in settings.api_keys}
        self._secret = os.urandom(32)
        self.reset()

    def reset(self) -> None:
        self.offset = 0.0
        self.faults = dataclasses.replace(self.settings.faults)
        self.rng = random.Random(self.settings.seed)
        self.tasks: dict[str, _Task] = {}
        self.counts: Counter[str] = Counter()
        self.prompts: Counter[str] = Counter()
        self.body_types: Counter[str] = Counter()  # media types of create bodies
        self.download_headers: deque[dict[str, str]] = deque(maxlen=50)

    def now(self) -> float:
        return self._wall() + self.offset

    def stats(self) -> dict[str, Any]:
        keys = ("create_requests", "creates", "images", "refused", "gets", "cancels")
        more = ("download_requests", "downloads", "downloads_cut", "downloads_refused")
        return {
            **{key: self.counts[key] for key in (*keys, *more)},
            "tasks": len(self.tasks),
            "prompts": dict(self.prompts),
            "body_types": dict(self.body_types),
            "download_headers": list(self.download_headers),
        }

    def error(
        self,
        status: int,
        code: str | None,
        message: str,
        *,
        param: str | None = None,
        kind: str = "invalid_request_error",
        retry: int | None = None,
    ) -> JSONResponse:
        """An answer in the ``{"error": {message, type, param, code}}`` envelope."""
        body = {"error": {"message": message, "type": kind, "param": param, "code": code}}
        headers = {"Retry-After": str(retry)} if retry is not None else None
        return JSONResponse(body, status, headers=headers)

    def refuse(self, request: Request) -> JSONResponse | None:
        """The answer for an outage or a bad key, else None."""
        if self.faults.outage:
            return self.error(503, "service_unavailable", "the service is unavailable", kind="")
        if request.headers.get("authorization") not in self._bearers:
            return self.error(
                401, "invalid_api_key", "invalid or missing bearer token", kind="authentication"
            )
        return None

    def add(self, fields: dict[str, Any]) -> _Task:
        now = self.now()
        settings = self.settings
        run = self.rng.uniform(
            settings.min_seconds, max(settings.min_seconds, settings.max_seconds)
        )
        prompt: str = fields["prompt"]
        outcome = "failed" if FAIL in prompt else "error" if ERROR in prompt else "succeeded"
        prefix = "video_" if self.openai else "task_"
        task = _Task(
            id=prefix + os.urandom(16).hex(),
            model=fields["model"],
            prompt=prompt,
            seconds=fields["seconds"],
            size=fields["size"],
            ratio=fields["ratio"],
            resolution=fields["resolution"],
            created=now,
            started=now + run * settings.queue_fraction,
            ended=now + run,
            outcome=outcome,
        )
        self.tasks[task.id] = task
        self.counts["creates"] += 1
        self.counts["images"] += "input_reference" in fields
        self.prompts[prompt] += 1
        return task

    def view(self, task: _Task, request: Request, *, created: bool = False) -> dict[str, Any]:
        """The video object of ``task`` as of now (queued when just ``created``)."""
        now = self.now()
        state = "queued" if created else task.state(now)
        done = state in ("succeeded", "failed", "error")
        out: dict[str, Any] = {"id": task.id}
        if not self.openai:
            out["task_id"] = task.id
        names = _OPENAI if self.openai else _LOWER if self.faults.lowercase else _COMET
        out.update(
            object="video",
            model=task.model,
            status=names[state],
            progress=0 if created else task.progress(now),
            created_at=int(task.created),
            completed_at=int(task.ended) if done else None,
        )
        expires = int(task.ended + self.settings.url_ttl)
        if self.openai:
            out.update(
                seconds=str(task.seconds),
                size=task.size,
                prompt=task.prompt,
                expires_at=expires if state == "succeeded" else None,
                error=None,
                remixed_from_video_id=None,
            )
        elif state == "succeeded":
            out["video_url"] = self.video_url(task, request, expires)
            out["expires_at"] = expires
        if state == "failed":
            code = "moderation_blocked" if self.openai else "content_policy_violation"
            message = "the output video was flagged by the content filter"
            out["error"] = {"code": code, "message": message}
        elif state == "error":
            out["error"] = {"code": "internal_error", "message": "the generation crashed"}
        return out

    def video_url(self, task: _Task, request: Request, expires: int) -> str:
        base = (self.settings.public_url or str(request.base_url)).rstrip("/")
        return f"{base}/_fake/videos/{task.id}.mp4?{self.query(task.id, expires)}"

    def query(self, task_id: str, expires: int) -> str:
        """The signed query string of a video URL, exactly as issued (``+/=`` escaped)."""
        message = f"{task_id}.mp4\n{expires}".encode()
        signature = base64.b64encode(hmac.new(self._secret, message, hashlib.sha256).digest())
        return f"expires={expires}&signature={quote(signature.decode(), safe='')}"

    async def read_create(self, request: Request) -> dict[str, Any] | JSONResponse:
        """The create request's fields checked, or the 400 that refuses them."""
        content_type = request.headers.get("content-type", "")
        self.body_types[content_type.partition(";")[0].strip() or "(none)"] += 1
        raw: dict[str, Any] = {}
        if content_type.startswith("application/json"):
            try:
                body = json.loads(await request.body())
            except ValueError:
                return self.error(400, "invalid_json", "the body is not valid JSON")
            if not isinstance(body, dict):
                return self.error(400, "invalid_json", "the body must be a JSON object")
            raw = body
        else:
            try:
                form = await request.form()
            except Exception:  # the multipart parser's errors
                return self.error(400, "invalid_body", "the form body could not be parsed")
            for name, value in form.multi_items():
                if isinstance(value, UploadFile):
                    data = await value.read()
                    media = value.content_type or ""
                    if name != "input_reference" or not data or not media.startswith("image/"):
                        return self._invalid(name, f"{name} must be an image file")
                    raw[name] = data
                else:
                    raw[name] = value
        return self._check(raw)

    def _check(self, raw: dict[str, Any]) -> dict[str, Any] | JSONResponse:
        fields: dict[str, Any] = {}
        for name in ("prompt", "model"):
            value = raw.get(name)
            if not isinstance(value, str) or not value.strip():
                code = "missing_parameter" if self.openai else "MissingParameter"
                return self.error(400, code, f"{name} is required", param=name)
            fields[name] = value
        seconds = raw.get("seconds", "4" if self.openai else 5)
        try:
            fields["seconds"] = int(seconds)
        except (TypeError, ValueError):
            fields["seconds"] = 0
        if not 1 <= fields["seconds"] <= self.settings.max_video_seconds:
            top = self.settings.max_video_seconds
            return self._invalid("seconds", f"seconds must be an integer from 1 to {top}")
        size = raw.get("size", "1280x720" if self.openai else "16:9")
        if self.openai:
            match = _PIXELS.fullmatch(size) if isinstance(size, str) else None
            if match is None:
                return self._invalid("size", "size must be WIDTHxHEIGHT in pixels")
            fields["ratio"] = _nearest_ratio(int(match[1]), int(match[2]))
            fields["resolution"] = f"{min(int(match[1]), int(match[2]))}p"
        else:
            if size not in RATIOS:
                return self._invalid("size", f"size must be one of {', '.join(RATIOS)}")
            fields["ratio"] = size
            resolution = raw.get("resolution", "720p")
            if resolution not in RESOLUTIONS:
                return self._invalid("resolution", f"resolution must be one of {RESOLUTIONS}")
            fields["resolution"] = resolution
        fields["size"] = size
        if isinstance(raw.get("input_reference"), bytes):
            fields["input_reference"] = raw["input_reference"]
        return fields

    def _invalid(self, param: str, message: str) -> JSONResponse:
        return self.error(
            400, "invalid_value" if self.openai else "InvalidParameter", message, param=param
        )


def _nearest_ratio(width: int, height: int) -> str:
    def distance(ratio: str) -> float:
        w, h = (int(part) for part in ratio.split(":"))
        return abs(w / h - width / height)

    return min(RATIOS, key=distance)


def fake_cometapi_app(
    settings: FakeCometSettings | None = None, *, clock: Callable[[], float] = time.time
) -> Starlette:
    """The fake as an ASGI app; its ``FakeComet`` state is ``app.state.fake``."""
    fake = FakeComet(settings or FakeCometSettings(), clock)

    async def create(request: Request) -> Response:
        fake.counts["create_requests"] += 1
        refused = fake.refuse(request)
        if refused is not None:
            return refused
        f = fake.faults
        if take(f, "create_429"):
            return fake.error(
                429,
                "rate_limit_exceeded",
                "too many requests",
                kind="rate_limit_error",
                retry=f.retry_after,
            )
        if take(f, "create_500"):
            return fake.error(500, "internal_error", "the server had an error", kind="server")
        if take(f, "create_503"):
            return fake.error(503, "service_unavailable", "the server is overloaded", kind="")
        fields = await fake.read_create(request)
        if isinstance(fields, JSONResponse):
            fake.counts["refused"] += 1
            return fields
        if REFUSE in fields["prompt"]:
            fake.counts["refused"] += 1
            code = "moderation_blocked" if fake.openai else "content_policy_violation"
            return fake.error(400, code, "the prompt was flagged by the content filter")
        task = fake.add(fields)
        if take(f, "create_hang"):
            await hang(request, f.hang_seconds)
        body = fake.view(task, request, created=True)
        if not fake.openai:
            body.pop("completed_at")
        return JSONResponse(body)

    async def get(request: Request) -> Response:
        fake.counts["gets"] += 1
        refused = fake.refuse(request)
        if refused is not None:
            return refused
        f = fake.faults
        if take(f, "get_429"):
            return fake.error(
                429,
                "rate_limit_exceeded",
                "too many requests",
                kind="rate_limit_error",
                retry=f.retry_after,
            )
        if take(f, "get_500"):
            return fake.error(500, "internal_error", "the server had an error", kind="server")
        if take(f, "get_malformed"):
            return Response('{"id": "task_', media_type="application/json")
        task = fake.tasks.get(request.path_params["video_id"])
        if task is None:
            return _missing(fake)
        return JSONResponse(fake.view(task, request))

    async def delete(request: Request) -> Response:
        fake.counts["cancels"] += 1
        refused = fake.refuse(request)
        if refused is not None:
            return refused
        task = fake.tasks.pop(request.path_params["video_id"], None)
        if task is None:
            return _missing(fake)
        return JSONResponse({"id": task.id, "object": "video.deleted", "deleted": True})

    async def content(request: Request) -> Response:
        fake.counts["download_requests"] += 1
        fake.download_headers.append(dict(request.headers))
        refused = fake.refuse(request)
        if refused is not None:
            return refused
        task = fake.tasks.get(request.path_params["video_id"])
        now = fake.now()
        if task is None or task.state(now) != "succeeded":
            fake.counts["downloads_refused"] += 1
            return _missing(fake)
        if now > task.ended + fake.settings.url_ttl:
            fake.counts["downloads_refused"] += 1
            return fake.error(404, "video_expired", "the video content has expired")
        return await _send_video(fake, task)

    async def video(request: Request) -> Response:
        fake.counts["download_requests"] += 1
        fake.download_headers.append(dict(request.headers))
        name: str = request.path_params["name"]
        task = fake.tasks.get(name.removesuffix(".mp4"))
        raw = request.scope["query_string"].decode("latin-1")
        expires = raw.partition("expires=")[2].partition("&")[0]
        if (
            task is None
            or not name.endswith(".mp4")
            or task.state(fake.now()) != "succeeded"
            or not expires.isdigit()
            or raw != fake.query(task.id, int(expires))
        ):
            fake.counts["downloads_refused"] += 1
            return fake.error(403, "signature_mismatch", "the link is not signed as issued")
        if fake.now() > int(expires):
            fake.counts["downloads_refused"] += 1
            return fake.error(403, "link_expired", "the link has expired")
        return await _send_video(fake, task)

    async def not_found(request: Request) -> Response:
        refused = fake.refuse(request) if request.url.path.startswith("/v1/") else None
        return refused or fake.error(404, "not_found", f"no route {request.url.path[:100]}")

    routes = [
        Route("/v1/videos", create, methods=["POST"]),
        Route("/v1/videos/{video_id}", get, methods=["GET"]),
        *control_routes(fake),
    ]
    if fake.openai:
        routes += [
            Route("/v1/videos/{video_id}", delete, methods=["DELETE"]),
            Route("/v1/videos/{video_id}/content", content, methods=["GET"]),
        ]
    else:
        routes.append(Route("/_fake/videos/{name}", video, methods=["GET"]))
    routes.append(Route("/{path:path}", not_found, methods=["GET", "POST", "PUT", "DELETE"]))
    app = Starlette(routes=routes)
    app.state.fake = fake
    return app


async def _send_video(fake: FakeComet, task: _Task) -> Response:
    data = await asyncio.to_thread(clip, task.seconds, task.ratio)
    if take(fake.faults, "download_cut"):
        fake.counts["downloads_cut"] += 1
        return CutResponse(data, "video/mp4")
    fake.counts["downloads"] += 1
    return Response(data, media_type="video/mp4")


def _missing(fake: FakeComet) -> JSONResponse:
    if fake.openai:
        return fake.error(404, None, "no video with this id")
    return fake.error(400, "task_not_exist", "task_not_exist")


def main(argv: list[str] | None = None) -> None:
    """Serve the fake with uvicorn until interrupted."""
    import uvicorn

    parser = argparse.ArgumentParser(description="A fake CometAPI / OpenAI Videos upstream.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9200)
    parser.add_argument("--dialect", choices=("cometapi", "openai"), default="cometapi")
    parser.add_argument("--key", action="append", help="an accepted key (repeatable)")
    parser.add_argument("--min-seconds", type=float, default=5.0)
    parser.add_argument("--max-seconds", type=float, default=20.0)
    parser.add_argument("--queue-fraction", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--url-ttl", type=float, default=24 * 3600.0)
    parser.add_argument("--public-url", default=None, help="base of video URLs (default: Host)")
    parser.add_argument("--faults", default="{}", help='initial faults, JSON: {"create_429": 2}')
    parser.add_argument("--log-level", default="warning")
    args = parser.parse_args(argv)
    faults = FakeCometFaults()
    try:
        update_switches(faults, json.loads(args.faults))
    except ValueError as exc:
        parser.error(f"--faults: {exc}")
    settings = FakeCometSettings(
        dialect=args.dialect,
        api_keys=tuple(args.key or ("fake-comet-key",)),
        min_seconds=args.min_seconds,
        max_seconds=args.max_seconds,
        queue_fraction=args.queue_fraction,
        seed=args.seed,
        url_ttl=args.url_ttl,
        public_url=args.public_url,
        faults=faults,
    )
    print(f"fake {args.dialect} on http://{args.host}:{args.port}/v1/videos", flush=True)
    uvicorn.run(
        fake_cometapi_app(settings), host=args.host, port=args.port, log_level=args.log_level
    )


if __name__ == "__main__":
    main()
