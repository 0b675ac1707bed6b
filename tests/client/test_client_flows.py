"""The shared flows driven by hand: scripted answers and a fake clock, no network, no sleeps."""

from __future__ import annotations

import io
from typing import Any

import httpx
import pytest

from reelgate.client import (
    APIConnectionError,
    AuthenticationError,
    Cadence,
    DownloadError,
    NotFoundError,
    PermissionDeniedError,
    RateLimited,
    RetryPolicy,
    ServerError,
    TaskFailed,
    Video,
    WaitTimeout,
    _base,
    _flows,
)

URL = "http://127.0.0.1:9/files/t.mp4?sig=1"
BODY = bytes(range(256)) * 4
Streamed = tuple[httpx.Response | None, list[bytes], httpx.TransportError | None]


def video(status: str, progress: int = 0, **extra: Any) -> dict[str, Any]:
    return {
        "id": "t",
        "object": "video",
        "model": "m",
        "status": status,
        "progress": progress,
        **extra,
    }


def ok(body: dict[str, Any], headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(200, json=body, headers=headers, request=httpx.Request("GET", "http://x"))


def fail(status: int, headers: dict[str, str] | None = None) -> httpx.Response:
    envelope = {"error": {"message": f"status {status}", "code": None}}
    return httpx.Response(
        status, json=envelope, headers=headers, request=httpx.Request("GET", "http://x")
    )


def part(status: int, headers: dict[str, str]) -> httpx.Response:
    return httpx.Response(status, headers=headers, request=httpx.Request("GET", URL))


def whole(start: int = 0, *, length: int | None = None) -> httpx.Response:
    size = len(BODY) if length is None else length
    if start == 0:
        return part(200, {"Content-Length": str(size), "ETag": '"e1"'})
    span = f"bytes {start}-{len(BODY) - 1}/{len(BODY)}"
    return part(206, {"Content-Range": span, "Content-Length": str(len(BODY) - start)})


RESET = httpx.ReadError("connection reset", request=httpx.Request("GET", URL))


class Script:
    """Runs a flow against scripted outcomes and a fake clock; records what it did."""

    def __init__(self, *answers: Any, retry: RetryPolicy | None = None) -> None:
        self.answers = list(answers)
        self.now = 0.0
        self.sleeps: list[float] = []
        self.seen: list[Video] = []
        self.sent: list[httpx.Request] = []
        self.sink = io.BytesIO()
        policy = retry or RetryPolicy(max_retries=2, initial_backoff=1, max_backoff=8)
        settings = _base.resolve_settings("http://127.0.0.1:9", "k", 5, env={})
        self.ctx = _flows.Context(settings, policy, rand=lambda: 0.0, clock=lambda: self.now)

    def run(self, flow: _flows.Flow[Any]) -> Any:
        outcome: object = None
        while True:
            try:
                effect = flow.send(outcome)
            except StopIteration as stop:
                assert not self.answers, f"unused answers: {self.answers}"
                return stop.value
            outcome = self.perform(effect)

    def perform(self, effect: _flows.Effect) -> object:
        if isinstance(effect, _flows.Sleep):
            self.sleeps.append(effect.seconds)
            self.now += effect.seconds
            return None
        if isinstance(effect, _flows.Notify):
            self.seen.append(effect.video)
            return None
        self.sent.append(effect.request)
        self.now += 0.01
        answer = self.answers.pop(0)
        if isinstance(effect, _flows.Send):
            return answer
        response, chunks, error = answer
        if response is not None and effect.accept(response):
            for chunk in chunks:
                effect.feed(chunk)
        return _flows.Streamed(response, error)

    def wait(self, timeout: float = 60, interval: float = 10) -> Video:
        flow = _flows.wait(
            self.ctx, "t", timeout=timeout, cadence=Cadence(interval), on_progress=self.seen.append
        )
        return self.run(flow)  # type: ignore[no-any-return]


# --- wait -----------------------------------------------------------------------------------


def test_wait_polls_at_the_cadence_until_success_and_reports_each_state() -> None:
    script = Script(
        ok(video("SUBMITTED")),
        ok(video("IN_PROGRESS", 40)),
        ok(video("SUCCESS", 100, video_url=URL)),
    )
    done = script.wait()
    assert done.succeeded and done.video_url == URL
    assert script.sleeps == [10.0, 10.0]
    assert [v.progress for v in script.seen] == [0, 40, 100]


def test_wait_never_polls_sooner_than_the_server_asks() -> None:
    slow = {"openai-poll-after-ms": "25000"}
    script = Script(ok(video("queued"), slow), ok(video("completed", 100, video_url=URL)))
    assert script.wait().normalized_status == "SUCCESS"
    assert script.sleeps == [25.0]


def test_wait_rides_out_transient_failures_with_backoff() -> None:
    script = Script(
        fail(503),
        httpx.ConnectError("refused", request=httpx.Request("GET", "http://x")),
        fail(429, {"Retry-After": "7"}),
        ok(video("SUCCESS", 100, video_url=URL)),
    )
    assert script.wait().succeeded
    assert script.sleeps == [1.0, 2.0, 7.0]


def test_wait_stops_on_failure_with_the_reason() -> None:
    reason = {"code": "content_rejected", "message": "the prompt was rejected"}
    script = Script(ok(video("in_progress", 10)), ok(video("failed", 10, error=reason)))
    with pytest.raises(TaskFailed) as caught:
        script.wait()
    assert caught.value.task_status == "FAILED" and caught.value.reason == "the prompt was rejected"
    assert caught.value.code == "content_rejected" and len(script.seen) == 2


def test_wait_gives_up_at_its_timeout_with_the_last_state_and_error() -> None:
    script = Script(ok(video("IN_PROGRESS", 50)), *[fail(502)] * 4)
    with pytest.raises(WaitTimeout) as caught:
        script.wait(timeout=15, interval=10)
    assert caught.value.video is not None and caught.value.video.progress == 50
    assert isinstance(caught.value.__cause__, ServerError)
    assert script.sleeps[:3] == [10.0, 1.0, 2.0]  # then the next (4 s) is cut to the deadline
    assert 15 <= script.now <= 15.1 and not script.answers


def test_wait_does_not_outwait_its_timeout_for_a_long_retry_after() -> None:
    script = Script(fail(429, {"Retry-After": "120"}))
    with pytest.raises(WaitTimeout):
        script.wait(timeout=60)
    assert script.sleeps == []


def test_wait_raises_at_once_on_an_error_that_retrying_cannot_cure() -> None:
    script = Script(ok(video("IN_PROGRESS", 5)), fail(401))
    with pytest.raises(AuthenticationError):
        script.wait()


def test_create_and_wait_reports_the_created_task_first() -> None:
    script = Script(ok(video("SUBMITTED")), ok(video("SUCCESS", 100, video_url=URL)))
    flow = _flows.create_and_wait(
        script.ctx,
        "p",
        {"model": "m"},
        None,
        timeout=60,
        cadence=Cadence(1),
        on_progress=script.seen.append,
    )
    assert script.run(flow).succeeded
    assert [v.status for v in script.seen] == ["SUBMITTED", "SUCCESS"]
    assert [r.method for r in script.sent] == ["POST", "GET"]


# --- requests ----------------------------------------------------------------------------------


def test_requests_retry_transient_failures_then_raise_the_last() -> None:
    script = Script(fail(500), fail(503), fail(500))
    with pytest.raises(ServerError):
        script.run(_flows.retrieve(script.ctx, "t"))
    assert script.sleeps == [1.0, 2.0]


def test_create_is_not_repeated_when_the_server_may_have_acted() -> None:
    script = Script(fail(500))
    with pytest.raises(ServerError):
        script.run(_flows.create(script.ctx, "p", {"model": "m"}, None))
    script = Script(fail(429, {"Retry-After": "1"}), ok(video("SUBMITTED")))
    assert script.run(_flows.create(script.ctx, "p", {"model": "m"}, None)).status == "SUBMITTED"


def test_a_retry_after_beyond_the_limit_is_raised_not_waited() -> None:
    script = Script(fail(429, {"Retry-After": "3600"}))
    with pytest.raises(RateLimited) as caught:
        script.run(_flows.retrieve(script.ctx, "t"))
    assert caught.value.retry_after == 3600 and script.sleeps == []


def test_connection_errors_become_api_connection_error() -> None:
    refused = httpx.ConnectError("refused", request=httpx.Request("GET", "http://x"))
    script = Script(refused, refused, refused)
    with pytest.raises(APIConnectionError):
        script.run(_flows.retrieve(script.ctx, "t"))


# --- download -----------------------------------------------------------------------------------


def finished() -> Video:
    return Video.model_validate(video("SUCCESS", 100, video_url=URL))


def test_download_resumes_a_cut_body_where_it_stopped() -> None:
    half = len(BODY) // 2
    script = Script((whole(), [BODY[:half]], RESET), (whole(half), [BODY[half:]], None))
    assert script.run(_flows.download(script.ctx, finished(), script.sink)) == len(BODY)
    assert script.sink.getvalue() == BODY and script.sleeps == []
    assert script.sent[1].headers["range"] == f"bytes={half}-"
    assert script.sent[1].headers["if-range"] == '"e1"'


def test_download_starts_over_when_the_server_ignores_the_range() -> None:
    script = Script((whole(), [BODY[:100]], RESET), (whole(), [BODY], None))
    script.run(_flows.download(script.ctx, finished(), script.sink))
    assert script.sink.getvalue() == BODY


def test_download_resumes_a_short_body_and_accepts_416_when_complete() -> None:
    short = (whole(), [BODY[:-1]], None)
    script = Script(short, (whole(len(BODY) - 1), [BODY[-1:]], None))
    script.run(_flows.download(script.ctx, finished(), script.sink))
    assert script.sink.getvalue() == BODY
    # every byte came, then the connection broke: done, no second request
    script = Script((whole(), [BODY], RESET))
    assert script.run(_flows.download(script.ctx, finished(), script.sink)) == len(BODY)
    # no length announced, cut after every byte: the resume gets 416 for a complete file
    chunked = part(200, {"ETag": '"e1"'})
    done: Streamed = (part(416, {"Content-Range": f"bytes */{len(BODY)}"}), [], None)
    script = Script((chunked, [BODY], RESET), done)
    assert script.run(_flows.download(script.ctx, finished(), script.sink)) == len(BODY)
    assert script.sink.getvalue() == BODY


def test_download_refuses_more_bytes_than_announced() -> None:
    script = Script((whole(length=10), [BODY], None))
    with pytest.raises(DownloadError, match="expected 10"):
        script.run(_flows.download(script.ctx, finished(), script.sink))


def test_download_refreshes_a_refused_url_then_gives_up_after_a_few() -> None:
    fresh = ok(video("SUCCESS", 100, video_url=URL + "&fresh"))
    script = Script((fail(403), [], None), fresh, (whole(), [BODY], None))
    script.run(_flows.download(script.ctx, finished(), script.sink))
    assert str(script.sent[-1].url).endswith("&fresh")
    refused = [(fail(403), [], None), fresh] * 3 + [(fail(403), [], None)]
    script = Script(*refused)
    with pytest.raises(PermissionDeniedError):
        script.run(_flows.download(script.ctx, finished(), script.sink))


def test_download_of_an_unfinished_task_says_to_wait() -> None:
    script = Script(ok(video("IN_PROGRESS", 30)))
    with pytest.raises(DownloadError, match="wait for it first"):
        script.run(_flows.download(script.ctx, "t", script.sink))


def test_download_retries_transient_answers_and_raises_lasting_ones() -> None:
    script = Script((fail(503), [], None), (None, [], RESET), (whole(), [BODY], None))
    script.run(_flows.download(script.ctx, finished(), script.sink))
    assert script.sleeps == [1.0, 2.0]
    script = Script((fail(404), [], None))
    with pytest.raises(NotFoundError):
        script.run(_flows.download(script.ctx, finished(), script.sink))
    script = Script(*[(None, [], RESET)] * 3)
    with pytest.raises(APIConnectionError):
        script.run(_flows.download(script.ctx, finished(), script.sink))
