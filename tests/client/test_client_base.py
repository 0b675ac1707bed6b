"""The pure base: settings, requests, the error table, retry and poll timing, models."""

from __future__ import annotations

import email.utils
import io
import subprocess
import sys
from email.parser import BytesParser
from email.policy import HTTP
from pathlib import Path

import httpx
import pytest
from fakeserver import tiny_png

from reelgate.client import (
    DEFAULT_BASE_URL,
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    Cadence,
    InvalidParameter,
    MissingParameter,
    NotFoundError,
    PermissionDeniedError,
    RateLimited,
    ReelgateError,
    RetryPolicy,
    ServerError,
    TaskFailed,
    TaskNotFound,
    Video,
    _base,
    is_failure,
    is_terminal,
    normalize_status,
)
from reelgate.client._files import image_part, target_path


def settings(key: str | None = "k") -> _base.Settings:
    return _base.resolve_settings("http://127.0.0.1:9", key, 5.0, env={})


def answer(
    status: int, body: object = None, headers: dict[str, str] | None = None
) -> httpx.Response:
    request = httpx.Request("GET", "http://127.0.0.1:9/v1/videos/x")
    if isinstance(body, str):
        return httpx.Response(status, text=body, headers=headers, request=request)
    return httpx.Response(status, json=body, headers=headers, request=request)


def envelope(message: str, code: str | None = None, param: str | None = None) -> dict[str, object]:
    return {
        "error": {"message": message, "type": "invalid_request_error", "param": param, "code": code}
    }


# --- settings -------------------------------------------------------------------------------


def test_settings_come_from_arguments_then_environment_then_defaults() -> None:
    env = {"REELGATE_BASE_URL": "http://env.example:1/", "REELGATE_API_KEY": "env-key"}
    assert _base.resolve_settings("http://arg:2", "arg-key", 1, env=env).base_url == "http://arg:2"
    from_env = _base.resolve_settings(None, None, 1, env=env)
    assert (from_env.base_url, from_env.api_key) == ("http://env.example:1", "env-key")
    bare = _base.resolve_settings(None, None, 1, env={})
    assert (bare.base_url, bare.api_key) == (DEFAULT_BASE_URL, None)


def test_settings_accept_an_openai_style_v1_base_and_refuse_nonsense() -> None:
    assert _base.resolve_settings("https://api.cometapi.com/v1/", None, 1, env={}).base_url == (
        "https://api.cometapi.com"
    )
    with pytest.raises(ValueError, match="http"):
        _base.resolve_settings("ftp://x", None, 1, env={})


# --- requests -------------------------------------------------------------------------------


def form_of(request: httpx.Request) -> dict[str, tuple[str | None, str, object]]:
    content_type = request.headers["content-type"]
    assert content_type.startswith("multipart/form-data")
    raw = f"Content-Type: {content_type}\r\n\r\n".encode() + request.read()
    parts = BytesParser(policy=HTTP).parsebytes(raw).iter_parts()
    return {
        str(p.get_param("name", header="content-disposition")): (
            p.get_filename(),
            p.get_content_type(),
            p.get_payload(decode=True),
        )
        for p in parts
    }


def test_create_is_multipart_with_only_the_fields_given() -> None:
    request = _base.create_request(
        settings(), "a fox", {"model": "m", "seconds": 5, "size": None}, None
    )
    assert request.method == "POST" and request.url == "http://127.0.0.1:9/v1/videos"
    assert request.headers["authorization"] == "Bearer k"
    form = form_of(request)
    assert set(form) == {"prompt", "model", "seconds"}
    assert form["seconds"][2] == b"5" and form["prompt"][0] is None


def test_create_attaches_the_image_as_input_reference() -> None:
    image = image_part(tiny_png())
    form = form_of(_base.create_request(settings(), "p", {"model": "m"}, image))
    assert form["input_reference"] == ("image.png", "image/png", tiny_png())


def test_create_refuses_arguments_it_does_not_know() -> None:
    with pytest.raises(TypeError, match="secnds"):
        _base.create_request(settings(), "p", {"model": "m", "secnds": 5}, None)  # type: ignore[typeddict-unknown-key]


def test_retrieve_quotes_the_id_and_refuses_an_empty_one() -> None:
    request = _base.retrieve_request(settings(None), "task/../x")
    assert request.url.raw_path == b"/v1/videos/task%2F..%2Fx"
    assert "authorization" not in request.headers
    with pytest.raises(ValueError):
        _base.retrieve_request(settings(), " ")


def test_file_requests_resume_with_range_and_keep_the_key_off_other_hosts() -> None:
    own = _base.file_request(
        settings(), "http://127.0.0.1:9/files/a.mp4?sig=1", offset=10, etag='"e"'
    )
    assert own.headers["range"] == "bytes=10-" and own.headers["if-range"] == '"e"'
    assert own.headers["authorization"] == "Bearer k"
    s3 = _base.file_request(
        settings(), "https://bucket.s3.example/a.mp4?X-Amz=1", offset=0, etag=None
    )
    assert "range" not in s3.headers and "authorization" not in s3.headers


def test_image_part_reads_paths_bytes_and_files(tmp_path: Path) -> None:
    path = tmp_path / "ref.jpg"
    path.write_bytes(b"\xff\xd8\xff\xe0rest")
    assert image_part(path) == ("ref.jpg", b"\xff\xd8\xff\xe0rest", "image/jpeg")
    assert image_part(str(path))[2] == "image/jpeg"
    webp = b"RIFF\x00\x00\x00\x00WEBPVP8 "
    assert image_part(io.BytesIO(webp)) == ("image.webp", webp, "image/webp")
    assert image_part(b"??")[2] == "application/octet-stream"
    assert target_path(tmp_path, "task_1") == tmp_path / "task_1.mp4"
    assert target_path(tmp_path / "a.mp4", "task_1") == tmp_path / "a.mp4"


# --- the error table --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (400, envelope("task_not_exist", "task_not_exist"), TaskNotFound),
        (400, envelope("task_not_exist"), TaskNotFound),
        (404, envelope("task_not_exist", "task_not_exist"), TaskNotFound),
        (400, envelope("size must be one of", "InvalidParameter", "size"), InvalidParameter),
        (400, envelope("prompt is required", "MissingParameter", "prompt"), MissingParameter),
        (400, envelope("the specified task_type r2v does not support model m"), InvalidParameter),
        (422, {"detail": [{"msg": "field required"}]}, InvalidParameter),
        (400, envelope("bad json", "invalid_request"), BadRequestError),
        (401, envelope("invalid api key", "invalid_api_key"), AuthenticationError),
        (403, envelope("expired", "forbidden"), PermissionDeniedError),
        (404, envelope("no route", "not_found"), NotFoundError),
        (404, "<html>not found</html>", NotFoundError),
        (413, envelope("too large", "payload_too_large"), APIStatusError),
        (429, envelope("slow down", "rate_limited"), RateLimited),
        (500, envelope("internal error (request id r1)", "internal_error"), ServerError),
        (503, "", ServerError),
    ],
)
def test_every_error_answer_maps_to_its_exception(
    status: int, body: object, expected: type[APIStatusError]
) -> None:
    exc = _base.error_from_response(answer(status, body, {"X-Request-Id": "req_1"}))
    assert type(exc) is expected
    assert exc.status == status and exc.request_id == "req_1" and exc.message


def test_error_fields_come_from_the_envelope() -> None:
    exc = _base.error_from_response(answer(400, envelope("size bad", "InvalidParameter", "size")))
    assert (exc.message, exc.code, exc.param) == ("size bad", "InvalidParameter", "size")
    assert "HTTP 400" in str(exc) and "InvalidParameter" in str(exc)
    limited = _base.error_from_response(answer(429, envelope("x"), {"Retry-After": "7"}))
    assert isinstance(limited, RateLimited) and limited.retry_after == 7


def test_transport_errors_map_to_connection_and_timeout() -> None:
    request = httpx.Request("GET", "http://127.0.0.1:9/v1/videos/x")
    refused = _base.error_from_transport(httpx.ConnectError("refused", request=request))
    timed_out = _base.error_from_transport(httpx.ReadTimeout("slow", request=request))
    assert type(refused) is APIConnectionError and type(timed_out) is APITimeoutError
    assert isinstance(timed_out, APIConnectionError) and isinstance(refused, ReelgateError)


def test_a_success_that_is_not_a_video_is_an_error() -> None:
    with pytest.raises(ReelgateError, match="unexpected answer"):
        _base.video_from_response(answer(200, {"hello": 1}))
    with pytest.raises(TaskNotFound):
        _base.video_from_response(answer(400, envelope("task_not_exist", "task_not_exist")))


# --- timing -------------------------------------------------------------------------------------


def test_retry_after_reads_seconds_milliseconds_and_dates() -> None:
    assert _base.retry_after({"Retry-After": "3"}) == 3
    assert _base.retry_after({"retry-after-ms": "250", "Retry-After": "3"}) == 0.25
    date = email.utils.formatdate(1_000_030, usegmt=True)
    assert _base.retry_after({"Retry-After": date}, now=1_000_000) == 30
    assert _base.retry_after({"Retry-After": "soon"}) is None
    assert _base.retry_after({}) is None


def test_backoff_grows_is_jittered_capped_and_yields_to_retry_after() -> None:
    policy = RetryPolicy(initial_backoff=0.5, max_backoff=4, max_retry_after=60)
    assert [policy.delay(n, {}, 0.0) for n in range(5)] == [0.5, 1, 2, 4, 4]
    assert policy.delay(0, {}, 0.999) == pytest.approx(0.5 * 0.75, rel=0.01)
    assert policy.delay(0, {"Retry-After": "9"}, 0.5) == 9
    assert policy.delay(0, {"Retry-After": "600"}, 0.5) is None


def test_transient_failures_are_connection_errors_408_429_and_5xx() -> None:
    request = httpx.Request("GET", "http://x")
    for status in (408, 429, 500, 502, 503, 504):
        assert _base.is_transient(answer(status), idempotent=True)
    for status in (200, 400, 401, 403, 404):
        assert not _base.is_transient(answer(status), idempotent=True)
    assert _base.is_transient(httpx.ReadError("reset", request=request), idempotent=True)
    # create is repeated only when the server surely did not act on it
    assert _base.is_transient(httpx.ConnectError("refused", request=request), idempotent=False)
    assert not _base.is_transient(httpx.ReadError("reset", request=request), idempotent=False)
    assert not _base.is_transient(answer(500), idempotent=False)
    assert _base.is_transient(answer(429), idempotent=False)


def test_cadence_jitters_upwards_and_never_polls_sooner_than_asked() -> None:
    cadence = Cadence(10.0, jitter=0.2)
    assert cadence.next_poll({}, 0.0) == (10.0, 0.0)
    assert cadence.next_poll({}, 0.5) == (11.0, 0.0)
    assert cadence.next_poll({"openai-poll-after-ms": "15000"}, 0.0) == (15.0, 15.0)
    assert cadence.next_poll({"Retry-After": "30"}, 0.9) == (30.0, 30.0)
    assert Cadence(0.05).next_poll({"openai-poll-after-ms": "10"}, 0) == (0.05, 0.01)


# --- models -----------------------------------------------------------------------------------


def test_video_keeps_unknown_fields_and_reads_the_contract() -> None:
    video = Video.model_validate(
        {
            "id": "task_1",
            "object": "video",
            "model": "m",
            "status": "SUCCESS",
            "progress": 100,
            "created_at": 1,
            "completed_at": 2,
            "video_url": "http://x/v.mp4",
            "seconds": "5",
        }
    )
    assert video.succeeded and video.is_terminal and not video.failed
    assert video.model_extra == {"seconds": "5"}


@pytest.mark.parametrize(
    ("status", "canonical", "terminal"),
    [
        ("SUBMITTED", "SUBMITTED", False),
        ("queued", "SUBMITTED", False),
        ("IN_PROGRESS", "IN_PROGRESS", False),
        ("in_progress", "IN_PROGRESS", False),
        ("running", "IN_PROGRESS", False),
        ("SUCCESS", "SUCCESS", True),
        ("completed", "SUCCESS", True),
        ("succeeded", "SUCCESS", True),
        ("FAILED", "FAILED", True),
        ("failed", "FAILED", True),
        ("cancelled", "FAILED", True),
        ("ERROR", "ERROR", True),
        ("error", "ERROR", True),
        ("thinking", "THINKING", False),
    ],
)
def test_statuses_of_every_dialect_normalise(status: str, canonical: str, terminal: bool) -> None:
    assert normalize_status(status) == canonical
    assert is_terminal(status) is terminal
    video = Video.model_validate({"id": "t", "status": status})
    assert video.status == status and video.normalized_status == canonical
    assert is_terminal(video) is terminal
    assert is_failure(video) is (canonical in {"FAILED", "ERROR"})


def test_video_tolerates_loose_progress_and_error_shapes() -> None:
    video = Video.model_validate(
        {"id": "t", "status": "failed", "progress": "45%", "error": "boom"}
    )
    assert video.progress == 45 and video.error is not None and video.error.message == "boom"
    assert Video.model_validate({"id": "t", "status": "queued", "progress": None}).progress == 0


def test_task_failed_carries_the_servers_reason() -> None:
    video = Video.model_validate(
        {"id": "t", "status": "ERROR", "error": {"code": "render_error", "message": "crashed"}}
    )
    exc = TaskFailed(video, request_id="req_9")
    assert (exc.task_status, exc.code, exc.reason, exc.request_id) == (
        "ERROR",
        "render_error",
        "crashed",
        "req_9",
    )
    assert "crashed" in str(exc) and exc.video is video


def test_the_client_imports_nothing_of_the_server_side() -> None:
    server = (
        "reelgate.api",
        "reelgate.store",
        "reelgate.domain",
        "reelgate.services",
        "reelgate.worker",
        "reelgate.renderers",
        "reelgate.blobs",
        "reelgate.settings",
        "fastapi",
        "starlette",
        "uvicorn",
        "av",
        "numpy",
    )
    code = (
        "import sys, reelgate.client, reelgate.client.cli\n"
        f"print([m for m in sys.modules if m.startswith({server!r})])\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"
