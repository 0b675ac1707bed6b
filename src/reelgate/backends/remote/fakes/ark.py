"""A fake of Ark's content-generation task API (Seedance), faithful to the wire.

``fake_ark_app(FakeArkSettings(...))`` is a Starlette app; its API lives under
``/api/v3`` as Ark's does, so a client's base URL is ``http://HOST:PORT/api/v3``:

- ``POST /api/v3/contents/generations/tasks``: validates the body as Ark does (``model``;
  ``content`` with one ``text`` item and at most one ``image_url`` item of role
  ``first_frame``, a data URL or an http(s) URL; ``duration``, ``ratio``, ``resolution``,
  ``seed``, ``watermark``, …) and answers ``{"id": "cgt-…"}``.
- ``GET …/tasks/{id}``: ``queued`` for the first ``queue_fraction`` of the task's run time
  (drawn from ``[min_seconds, max_seconds]``), then ``running``, then ``succeeded`` with
  ``content.video_url``, ``usage``, ``seed``, ``ratio``, ``duration``, …; all computed
  from the clock, so a GET is one dict lookup.
- ``GET …/tasks?page_num=&page_size=&filter.status=&filter.model=&filter.task_ids=``:
  ``{"total", "items"}``, newest first.
- ``DELETE …/tasks/{id}``: cancels a queued task, forgets a finished one, refuses a
  running or cancelled one (400 ``OperationDenied``: Ark's exact code there is a guess).
- Errors in Ark's shape ``{"error": {"code", "message", "param", "type"}}``; a missing or
  unknown ``Authorization: Bearer`` key is 401 ``AuthenticationError``.

Video URLs point at the fake: ``/_fake/videos/{id}.mp4?X-Tos-Expires=…&X-Tos-Signature=…``
with a base64 signature whose ``+ / =`` are percent-encoded. The raw query string must
come back byte for byte (a client that re-encodes it gets 403), and after ``url_ttl``
seconds from the task's end the URL answers 403, as an object store does.

Prompt markers: ``[[fake:refuse]]`` (400 ``SensitiveContentDetected`` at create),
``[[fake:fail]]`` (ends ``failed``, ``OutputVideoSensitiveContentDetected``),
``[[fake:expire]]`` (ends ``expired``).

Control (no key needed): ``GET|POST /_fake/faults`` (see ``FakeArkFaults``; a POST sets
the fields it names), ``GET /_fake/stats``, ``POST /_fake/reset``, ``POST /_fake/clock``
(``{"advance": seconds}`` moves the fake's clock forward).

Run by hand: ``python -m reelgate.backends.remote.fakes.ark --port 9100``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import contextlib
import dataclasses
import hashlib
import hmac
import os
import random
import re
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from reelgate.backends.remote.fakes.clips import FPS, clip
from reelgate.backends.remote.fakes.common import (
    CutResponse,
    control_routes,
    hang,
    take,
)

API = "/api/v3/contents/generations/tasks"
RATIOS = ("16:9", "9:16", "1:1", "4:3", "3:4", "21:9", "adaptive")
RESOLUTIONS = {"480p": (864, 480), "720p": (1280, 720), "1080p": (1920, 1080)}
FLAGS = ("watermark", "return_last_frame", "camera_fixed", "generate_audio", "draft")
REFUSE, FAIL, EXPIRE = "[[fake:refuse]]", "[[fake:fail]]", "[[fake:expire]]"
_DATA_URL = re.compile(r"data:image/(png|jpeg|jpg|webp|bmp|gif|tiff|heic|heif);base64,(.+)", re.S)
_QUERY = re.compile(r"X-Tos-Expires=(\d+)&X-Tos-Signature=[^&]*")


@dataclass
class FakeArkFaults:
    """Faults to inject; counters are consumed one per matching request."""

    create_429: int = 0  # next N creates: 429 RateLimitExceeded (with Retry-After)
    create_500: int = 0  # next N creates: 500 InternalServiceError
    create_503: int = 0  # next N creates: 503 ServiceUnavailable
    retry_after: int = 2  # the Retry-After of a 429, in seconds
    create_hang: int = 0  # next N creates: recorded, then no answer for hang_seconds
    hang_seconds: float = 30.0
    get_429: int = 0  # next N task GETs: 429
    get_500: int = 0  # next N task GETs: 500
    get_malformed: int = 0  # next N task GETs: 200 with a body that is not JSON
    list_500: int = 0  # next N lists: 500
    download_cut: int = 0  # next N video downloads: cut after half the body
    outage: bool = False  # every API route answers 503 while true


@dataclass(frozen=True)
class FakeArkSettings:
    """How the fake behaves; ``faults`` are the ones it starts (and resets) with."""

    api_keys: tuple[str, ...] = ("fake-ark-key",)
    min_seconds: float = 5.0  # a task's run time is uniform in [min_seconds, max_seconds]
    max_seconds: float = 20.0
    queue_fraction: float = 0.2  # the share of the run time spent queued
    seed: int | None = None  # seeds run times and ids, for repeatable runs
    url_ttl: float = 24 * 3600.0  # how long a video URL works after the task ends
    models: tuple[str, ...] | None = None  # None: any model; else others get 404
    public_url: str | None = None  # the base of video URLs; default: the request's host
    min_duration: int = 2
    max_duration: int = 15
    faults: FakeArkFaults = field(default_factory=FakeArkFaults)


class _Task:
    __slots__ = (
        "callback_url",
        "created",
        "duration",
        "ended",
        "id",
        "model",
        "outcome",
        "prompt",
        "ratio",
        "resolution",
        "seed",
        "started",
        "stopped",
        "url",
    )

    def __init__(self, task_id: str, body: dict[str, Any], prompt: str, created: float) -> None:
        self.id = task_id
        self.model: str = body["model"]
        self.prompt = prompt
        self.duration: int = body.get("duration") or 5
        ratio = body.get("ratio") or "16:9"
        self.ratio: str = "16:9" if ratio == "adaptive" else ratio
        self.resolution: str = body.get("resolution") or "720p"
        self.seed: int | None = body.get("seed")
        self.created = created
        self.started = self.ended = created
        self.stopped: float | None = None  # when cancelled
        self.outcome = (
            "failed" if FAIL in prompt else "expired" if EXPIRE in prompt else "succeeded"
        )
        self.url: str | None = None
        self.callback_url: str | None = body.get("callback_url")

    def state(self, now: float) -> tuple[str, float]:
        """The status at ``now`` and when it began."""
        if self.stopped is not None:
            return "cancelled", self.stopped
        if now < self.started:
            return "queued", self.created
        if now < self.ended:
            return "running", self.started
        return self.outcome, self.ended


class FakeArk:
    """The fake's state: tasks, faults, counters and its clock."""

    def __init__(self, settings: FakeArkSettings, clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self._wall = clock
        self._bearers = {f"Bearer {key}" for key in settings.api_keys}
        self._secret = os.urandom(32)
        self.reset()

    def reset(self) -> None:
        self.offset = 0.0
        self.faults = dataclasses.replace(self.settings.faults)
        self.rng = random.Random(self.settings.seed)
        self.tasks: dict[str, _Task] = {}
        self.videos: dict[str, tuple[int, str]] = {}  # id -> (duration, ratio), outlives tasks
        self.counts: Counter[str] = Counter()
        self.prompts: Counter[str] = Counter()
        self.download_headers: deque[dict[str, str]] = deque(maxlen=50)
        self.pending: set[asyncio.Future[None]] = set()  # callbacks being sent
        self._requests = 0

    def now(self) -> float:
        return self._wall() + self.offset

    def stats(self) -> dict[str, Any]:
        keys = ("create_requests", "creates", "refused", "gets", "lists", "deletes")
        more = ("download_requests", "downloads", "downloads_cut", "downloads_refused", "callbacks")
        return {
            **{key: self.counts[key] for key in (*keys, *more)},
            "tasks": len(self.tasks),
            "prompts": dict(self.prompts),
            "download_headers": list(self.download_headers),
        }

    def error(
        self, status: int, code: str, message: str, *, param: str = "", retry: int | None = None
    ) -> JSONResponse:
        """An answer in Ark's error shape."""
        self._requests += 1
        kind = _TYPES.get(status, "BadRequest")
        request_id = f"{int(self.now()):x}{self._requests:012x}"
        error = {"code": code, "message": f"{message} Request id: {request_id}", "param": param}
        headers = {"Retry-After": str(retry)} if retry is not None else None
        return JSONResponse({"error": {**error, "type": kind}}, status, headers=headers)

    def refuse(self, request: Request) -> JSONResponse | None:
        """The answer for an outage or a bad key, else None."""
        if self.faults.outage:
            return self.error(503, "ServiceUnavailable", "The service is temporarily unavailable.")
        if request.headers.get("authorization") not in self._bearers:
            return self.error(
                401,
                "AuthenticationError",
                "The API key or AK/SK in the request is missing or invalid.",
            )
        return None

    def new_id(self, now: float) -> str:
        stamp = time.strftime("%Y%m%d%H%M%S", time.gmtime(now))
        while True:
            suffix = "".join(self.rng.choices("abcdefghijklmnopqrstuvwxyz0123456789", k=5))
            task_id = f"cgt-{stamp}-{suffix}"
            if task_id not in self.tasks:
                return task_id

    def add(self, body: dict[str, Any], prompt: str) -> _Task:
        now = self.now()
        settings = self.settings
        task = _Task(self.new_id(now), body, prompt, now)
        run = self.rng.uniform(
            settings.min_seconds, max(settings.min_seconds, settings.max_seconds)
        )
        task.started = now + run * settings.queue_fraction
        task.ended = now + run
        if task.seed in (None, -1):
            task.seed = self.rng.randrange(2**31)
        self.tasks[task.id] = task
        self.counts["creates"] += 1
        self.prompts[prompt] += 1
        return task

    def view(self, task: _Task, request: Request) -> dict[str, Any]:
        """Ark's task object for ``task`` as of now."""
        status, since = task.state(self.now())
        out: dict[str, Any] = {
            "id": task.id,
            "model": task.model,
            "status": status,
            "created_at": int(task.created),
            "updated_at": int(since),
            "seed": task.seed,
            "resolution": task.resolution,
            "ratio": task.ratio,
            "duration": task.duration,
            "framespersecond": FPS,
            "service_tier": "default",
            "execution_expires_after": 172800,
        }
        if status == "succeeded":
            width, height = RESOLUTIONS.get(task.resolution, RESOLUTIONS["720p"])
            tokens = width * height * FPS * task.duration // 1024
            out["content"] = {"video_url": task.url or self.issue_url(task, request)}
            out["usage"] = {"completion_tokens": tokens, "total_tokens": tokens}
        elif status == "failed":
            out["error"] = {
                "code": "OutputVideoSensitiveContentDetected",
                "message": "The request failed because the output video may contain "
                "sensitive information.",
            }
        return out

    def issue_url(self, task: _Task, request: Request) -> str:
        base = self.settings.public_url or str(request.base_url)
        expires = int(task.ended + self.settings.url_ttl)
        task.url = f"{base.rstrip('/')}/_fake/videos/{task.id}.mp4?{self.query(task.id, expires)}"
        self.videos[task.id] = (task.duration, task.ratio)
        return task.url

    def query(self, task_id: str, expires: int) -> str:
        """The signed query string of a video URL, exactly as issued."""
        message = f"GET\n/{task_id}.mp4\n{expires}".encode()
        signature = base64.b64encode(hmac.new(self._secret, message, hashlib.sha256).digest())
        return f"X-Tos-Expires={expires}&X-Tos-Signature={quote(signature.decode(), safe='')}"


_TYPES = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    429: "TooManyRequests",
    500: "InternalServiceError",
    503: "ServiceUnavailable",
}


def validate(body: object, settings: FakeArkSettings) -> tuple[str, str] | str:
    """``(param, problem)`` for a create body Ark would refuse, else the prompt."""
    if not isinstance(body, dict):
        return "", "The request body must be a JSON object."
    model = body.get("model")
    if not isinstance(model, str) or not model.strip():
        return "model", "The parameter `model` specified in the request is missing or empty."
    content = body.get("content")
    if not isinstance(content, list) or not content:
        return "content", "The parameter `content` must be a non-empty array."
    texts: list[str] = []
    images = 0
    for item in content:
        kind = item.get("type") if isinstance(item, dict) else None
        if kind == "text" and isinstance(item, dict):
            text = item.get("text")
            if not isinstance(text, str) or not text.strip():
                return "content.text", "The parameter `content.text` must be a non-empty string."
            texts.append(text)
        elif kind == "image_url" and isinstance(item, dict):
            images += 1
            problem = _image_problem(item)
            if problem:
                return "content.image_url", problem
        else:
            return "content.type", "The parameter `content.type` must be `text` or `image_url`."
    if len(texts) != 1 or images > 1:
        return "content", "The parameter `content` takes one text item and one image at most."
    duration = body.get("duration")
    if duration is not None and (
        isinstance(duration, bool)
        or not isinstance(duration, int)
        or not settings.min_duration <= duration <= settings.max_duration
    ):
        return "duration", "The parameter `duration` specified in the request is not valid."
    if body.get("ratio") is not None and body.get("ratio") not in RATIOS:
        return "ratio", "The parameter `ratio` specified in the request is not valid."
    if body.get("resolution") is not None and body.get("resolution") not in RESOLUTIONS:
        return "resolution", "The parameter `resolution` specified in the request is not valid."
    seed = body.get("seed")
    if seed is not None and (
        isinstance(seed, bool) or not isinstance(seed, int) or not -1 <= seed < 2**32
    ):
        return "seed", "The parameter `seed` specified in the request is not valid."
    for flag in FLAGS:
        if body.get(flag) is not None and not isinstance(body.get(flag), bool):
            return flag, f"The parameter `{flag}` specified in the request is not valid."
    callback = body.get("callback_url")
    if callback is not None and not (
        isinstance(callback, str) and callback.startswith(("http://", "https://"))
    ):
        return "callback_url", "The parameter `callback_url` specified in the request is not valid."
    return texts[0]


def _image_problem(item: dict[str, Any]) -> str:
    if item.get("role") not in (None, "first_frame"):
        return "The parameter `role` specified in the request is not valid."
    image = item.get("image_url")
    url = image.get("url") if isinstance(image, dict) else None
    if not isinstance(url, str):
        return "The parameter `content.image_url.url` is missing."
    if url.startswith(("http://", "https://")):
        return ""
    match = _DATA_URL.fullmatch(url)
    if match is None:
        return "The parameter `content.image_url.url` is not a valid image URL or data URL."
    try:
        data = base64.b64decode(match[2], validate=True)
    except (binascii.Error, ValueError):
        data = b""
    return "" if data else "The image in `content.image_url.url` is not valid base64."


def fake_ark_app(
    settings: FakeArkSettings | None = None, *, clock: Callable[[], float] = time.time
) -> Starlette:
    """The fake as an ASGI app; its ``FakeArk`` state is ``app.state.fake``."""
    fake = FakeArk(settings or FakeArkSettings(), clock)  # read faults through it: reset

    async def create(request: Request) -> Response:
        fake.counts["create_requests"] += 1
        refused = fake.refuse(request)
        if refused is not None:
            return refused
        f = fake.faults
        if take(f, "create_429"):
            return fake.error(429, "RateLimitExceeded", "Too many requests.", retry=f.retry_after)
        if take(f, "create_500"):
            return fake.error(500, "InternalServiceError", "The service encountered an error.")
        if take(f, "create_503"):
            return fake.error(503, "ServiceUnavailable", "The service is temporarily unavailable.")
        try:
            body = await request.json()
        except ValueError:
            body = None
        checked = validate(body, fake.settings)
        if isinstance(checked, tuple):
            fake.counts["refused"] += 1
            return fake.error(400, "InvalidParameter", checked[1], param=checked[0])
        models = fake.settings.models
        if models is not None and body["model"] not in models:
            fake.counts["refused"] += 1
            return fake.error(
                404, "ModelNotOpen", "Your account has not activated the model service."
            )
        if REFUSE in checked:
            fake.counts["refused"] += 1
            return fake.error(
                400,
                "SensitiveContentDetected",
                "The request failed because the input text may contain sensitive information.",
            )
        task = fake.add(body, checked)
        if body.get("callback_url"):
            # Ark posts the task to callback_url when it ends; so does the fake.
            delay = max(0.0, task.ended - fake.now())
            asyncio.get_running_loop().call_later(
                delay, lambda: _keep(fake.pending, asyncio.ensure_future(call_back(task, request)))
            )
        if take(fake.faults, "create_hang"):
            await hang(request, fake.faults.hang_seconds)
        return JSONResponse({"id": task.id})

    async def call_back(task: _Task, request: Request) -> None:
        fake.counts["callbacks"] += 1
        with contextlib.suppress(httpx.HTTPError):
            async with httpx.AsyncClient(timeout=5) as client:
                await client.post(task.callback_url or "", json=fake.view(task, request))

    async def get(request: Request) -> Response:
        fake.counts["gets"] += 1
        refused = fake.refuse(request)
        if refused is not None:
            return refused
        if take(fake.faults, "get_429"):
            return fake.error(
                429, "RateLimitExceeded", "Too many requests.", retry=fake.faults.retry_after
            )
        if take(fake.faults, "get_500"):
            return fake.error(500, "InternalServiceError", "The service encountered an error.")
        if take(fake.faults, "get_malformed"):
            return Response('{"id": "cgt-', media_type="application/json")
        task = fake.tasks.get(request.path_params["task_id"])
        if task is None:
            return _not_found(fake, request.path_params["task_id"])
        return JSONResponse(fake.view(task, request))

    async def listing(request: Request) -> Response:
        fake.counts["lists"] += 1
        refused = fake.refuse(request)
        if refused is not None:
            return refused
        if take(fake.faults, "list_500"):
            return fake.error(500, "InternalServiceError", "The service encountered an error.")
        query = request.query_params
        pages: list[int] = []
        for name, default in (("page_num", 1), ("page_size", 10)):
            raw = query.get(name)
            value = int(raw) if raw is not None and raw.isdigit() else default
            if raw is not None and not (raw.isdigit() and 1 <= value <= 500):
                return fake.error(
                    400, "InvalidParameter", f"`{name}` must be 1 to 500.", param=name
                )
            pages.append(value)
        status, model = query.get("filter.status"), query.get("filter.model")
        ids = set(query.getlist("filter.task_ids"))
        now = fake.now()
        items = [
            task
            for task in reversed(fake.tasks.values())
            if (model is None or task.model == model)
            and (not ids or task.id in ids)
            and (status is None or task.state(now)[0] == status)
        ]
        start = (pages[0] - 1) * pages[1]
        page = [fake.view(task, request) for task in items[start : start + pages[1]]]
        return JSONResponse({"total": len(items), "items": page})

    async def delete(request: Request) -> Response:
        fake.counts["deletes"] += 1
        refused = fake.refuse(request)
        if refused is not None:
            return refused
        task_id = request.path_params["task_id"]
        task = fake.tasks.get(task_id)
        if task is None:
            return _not_found(fake, task_id)
        status, _ = task.state(fake.now())
        if status == "queued":
            task.stopped = fake.now()
        elif status in ("running", "cancelled"):
            return fake.error(
                400, "OperationDenied", f"A {status} task cannot be cancelled or deleted."
            )
        else:
            del fake.tasks[task_id]
        return JSONResponse({})

    async def video(request: Request) -> Response:
        fake.counts["download_requests"] += 1
        fake.download_headers.append(dict(request.headers))
        name: str = request.path_params["name"]
        task_id = name.removesuffix(".mp4")
        raw = request.scope["query_string"].decode("latin-1")
        match = _QUERY.fullmatch(raw)
        known = fake.videos.get(task_id)
        if not name.endswith(".mp4") or known is None or match is None:
            return _denied(fake, "AccessDenied", "The request is not signed.")
        if raw != fake.query(task_id, int(match[1])):
            return _denied(fake, "SignatureDoesNotMatch", "The signature does not match.")
        if fake.now() > int(match[1]):
            return _denied(fake, "AccessDenied", "Request has expired.")
        data = await asyncio.to_thread(clip, *known)
        if take(fake.faults, "download_cut"):
            fake.counts["downloads_cut"] += 1
            return CutResponse(data, "video/mp4")
        fake.counts["downloads"] += 1
        return Response(data, media_type="video/mp4")

    app = Starlette(
        routes=[
            Route(API, create, methods=["POST"]),
            Route(API, listing, methods=["GET"]),
            Route(API + "/{task_id}", get, methods=["GET"]),
            Route(API + "/{task_id}", delete, methods=["DELETE"]),
            Route("/_fake/videos/{name}", video, methods=["GET"]),
            *control_routes(fake),
        ]
    )
    app.state.fake = fake
    return app


def _keep(pending: set[asyncio.Future[None]], future: asyncio.Future[None]) -> None:
    pending.add(future)
    future.add_done_callback(pending.discard)


def _not_found(fake: FakeArk, task_id: str) -> JSONResponse:
    return fake.error(
        404, "ResourceNotFound", f"The specified task {task_id[:64]} is not found.", param="id"
    )


def _denied(fake: FakeArk, code: str, message: str) -> Response:
    fake.counts["downloads_refused"] += 1
    xml = f"<?xml version='1.0' encoding='UTF-8'?><Error><Code>{code}</Code>"
    return Response(f"{xml}<Message>{message}</Message></Error>", 403, media_type="application/xml")


def main(argv: list[str] | None = None) -> None:
    """Serve the fake with uvicorn until interrupted."""
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9100)
    parser.add_argument("--min-seconds", type=float, default=5.0)
    parser.add_argument("--max-seconds", type=float, default=20.0)
    parser.add_argument("--queue-fraction", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--url-ttl", type=float, default=24 * 3600.0)
    parser.add_argument("--public-url", default=None, help="base of video URLs (default: Host)")
    parser.add_argument("--api-key", action="append", help="an accepted key (repeatable)")
    parser.add_argument("--log-level", default="warning")
    args = parser.parse_args(argv)
    settings = FakeArkSettings(
        api_keys=tuple(args.api_key or ("fake-ark-key",)),
        min_seconds=args.min_seconds,
        max_seconds=args.max_seconds,
        queue_fraction=args.queue_fraction,
        seed=args.seed,
        url_ttl=args.url_ttl,
        public_url=args.public_url,
    )
    print(f"fake Ark on http://{args.host}:{args.port}/api/v3", flush=True)
    uvicorn.run(fake_ark_app(settings), host=args.host, port=args.port, log_level=args.log_level)


if __name__ == "__main__":
    main()
