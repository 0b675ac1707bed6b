"""Push on a real server: ``GET /v1/videos/{id}/events`` (SSE) and ``GET /v1/videos/{id}?wait=N``.

Two servers on loopback: one renders with the preview renderer slowed down (a stream
shows its progress rise, then the end); one runs no worker, so that the tests move
their tasks by hand through the store, exactly when they choose.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from reelgate.api.videos import retrieve_id
from reelgate.domain.status import Phase, Status
from reelgate.ports import Move
from tests.integration.sse import Frame, frames
from tests.procs import wait_until
from tests.server import LiveServer, start_server

MODEL = "doubao-seedance-1-0-pro"  # 2 s at 480p: a light render
HEARTBEAT = 0.3


@pytest.fixture(scope="module")
def rendering(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """Renders for real, each video stretched to 3 s, so that progress has steps."""
    server = start_server(
        tmp_path_factory.mktemp("sse-render"), workers=1, preview_delay="*=3", sse_heartbeat=2
    )
    yield server
    server.stop()


@pytest.fixture(scope="module")
def manual(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """No worker: tasks stay where the tests put them."""
    server = start_server(tmp_path_factory.mktemp("sse-manual"), workers=0, sse_heartbeat=HEARTBEAT)
    yield server
    server.stop()


def _client(server: LiveServer, owner: str = "alice") -> httpx.Client:
    return httpx.Client(base_url=server.base_url, headers=server.headers(owner), timeout=30)


def _create(client: httpx.Client) -> str:
    fields = {
        "prompt": "a lighthouse at dusk",
        "model": MODEL,
        "seconds": "2",
        "resolution": "480p",
    }
    response = client.post("/v1/videos", data=fields)
    assert response.status_code == 200, response.text
    return str(response.json()["id"])


def _claim(server: LiveServer, task_id: str) -> None:
    now = time.time()
    move = Move(
        task_id,
        frozenset({Phase.QUEUED}),
        Phase.RENDERING,
        now,
        fields={"lease_owner": "w", "lease_until": now + 300, "attempts": 1},
        detail="attempt 1",
    )
    server.call(server.components.store.move(move))


def _beat(server: LiveServer, task_id: str, progress: int) -> None:
    store = server.components.store
    server.call(
        store.heartbeat(task_id, worker="w", now=time.time(), lease_seconds=300, progress=progress)
    )


def _finish(server: LiveServer, task_id: str, status: Status = Status.SUCCESS) -> None:
    store = server.components.store
    code = None if status is Status.SUCCESS else "render_error"
    server.call(
        store.finish_task(
            task_id,
            worker="w",
            now=time.time(),
            status=status,
            error_code=code,
            error_message=None if code is None else "the renderer failed",
        )
    )


def _read(client: httpx.Client, task_id: str, headers: dict[str, str] | None = None) -> list[Frame]:
    """A whole stream, until the server ends it (within the client's timeout)."""
    with client.stream("GET", f"/v1/videos/{task_id}/events", headers=headers) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["cache-control"] == "no-cache"
        assert response.headers["x-request-id"]
        return list(frames(response))


def _events(stream: list[Frame]) -> list[Frame]:
    return [frame for frame in stream if frame.event]


def _same_as_get(video: dict[str, Any], got: dict[str, Any]) -> None:
    """The event's video object is the retrieve's, but for the link signed afresh."""
    for body in (video, got):
        body.pop("video_url", None)
        body.pop("expires_at", None)
    assert video == got


def test_a_stream_shows_progress_rise_and_ends_with_the_end(rendering: LiveServer) -> None:
    with _client(rendering) as client:
        task_id = _create(client)
        stream = _read(client, task_id)
        final = client.get(f"/v1/videos/{task_id}").json()
    events = _events(stream)
    assert events[-1].video["status"] == "SUCCESS" and events[-1].event == "status"
    assert events[-1].video["progress"] == 100 and events[-1].video["video_url"]
    _same_as_get(events[-1].video, final)
    ids = [frame.id for frame in events]
    assert all(seq is not None for seq in ids) and ids == sorted(set(ids)), ids  # type: ignore[type-var]
    progress = [frame.video["progress"] for frame in events]
    assert progress == sorted(progress), progress
    steps = {p for frame, p in zip(events, progress, strict=True) if frame.event == "progress"}
    assert len({p for p in steps if 0 < p < 100}) >= 3, progress  # it rose in steps
    statuses = [frame.video["status"] for frame in events]
    assert statuses[0] in ("SUBMITTED", "IN_PROGRESS")
    assert "IN_PROGRESS" in statuses
    for frame in events:
        video = frame.video
        assert video["id"] == video["task_id"] == task_id and video["object"] == "video"
        assert list(video)[:8] == [
            "id",
            "task_id",
            "object",
            "model",
            "status",
            "progress",
            "created_at",
            "completed_at",
        ]
        assert (video["completed_at"] is None) == (video["status"] != "SUCCESS")
        expected = "status" if frame is events[0] else frame.event
        assert frame.event == expected


def test_resume_after_last_event_id_repeats_nothing(manual: LiveServer) -> None:
    with _client(manual) as client:
        task_id = _create(client)
        _claim(manual, task_id)
        _beat(manual, task_id, 10)
        _beat(manual, task_id, 20)
        with client.stream("GET", f"/v1/videos/{task_id}/events") as response:
            first = next(f for f in frames(response) if f.event)
        assert (first.video["status"], first.video["progress"]) == ("IN_PROGRESS", 20)
        _beat(manual, task_id, 40)
        _finish(manual, task_id)

        resumed = _events(_read(client, task_id, {"Last-Event-ID": str(first.id)}))
        assert [(f.event, f.video["status"], f.video["progress"]) for f in resumed] == [
            ("status", "IN_PROGRESS", 40),  # the first event of a resumed stream: a new status
            ("status", "SUCCESS", 100),
        ]
        assert all(f.id is not None and first.id is not None and f.id > first.id for f in resumed)

        whole = _events(_read(client, task_id, {"Last-Event-ID": "0"}))  # the whole history
        assert [(f.video["status"], f.video["progress"]) for f in whole] == [
            ("SUBMITTED", 0),
            ("IN_PROGRESS", 0),
            ("IN_PROGRESS", 10),
            ("IN_PROGRESS", 20),
            ("IN_PROGRESS", 40),
            ("SUCCESS", 100),
        ]
        assert [f.event for f in whole] == ["status", "status", *["progress"] * 3, "status"]
        assert whole[-1].id == resumed[-1].id
        assert all(f.video["completed_at"] is None for f in whole[:-1])

        # A finished task: its state, then the end; after the last id: the end at once.
        assert [f.video["status"] for f in _events(_read(client, task_id))] == ["SUCCESS"]
        assert _read(client, task_id, {"Last-Event-ID": str(whole[-1].id)}) == []


def test_heartbeats_keep_an_idle_stream_and_changes_arrive(manual: LiveServer) -> None:
    with _client(manual) as client:
        task_id = _create(client)
        seen: list[Frame] = []
        with client.stream("GET", f"/v1/videos/{task_id}/events") as response:
            for frame in frames(response):
                seen.append(frame)
                if frame.data == "keep-alive" and sum(f.data == "keep-alive" for f in seen) == 2:
                    _claim(manual, task_id)
                if frame.event and frame.video["status"] == "IN_PROGRESS":
                    _finish(manual, task_id, Status.ERROR)
        kinds = [(f.event, f.data if not f.event else f.video["status"]) for f in seen]
        assert kinds[0] == ("status", "SUBMITTED")
        assert kinds[1:3] == [("", "keep-alive"), ("", "keep-alive")]
        assert kinds[-2:] == [("status", "IN_PROGRESS"), ("status", "ERROR")], kinds
        assert seen[-1].video["error"] == {"code": "render_error", "message": "the renderer failed"}


def test_refusals_come_before_the_stream(manual: LiveServer) -> None:
    with _client(manual) as client, _client(manual, "mallory") as other:
        task_id = _create(client)
        for response in (
            other.get(f"/v1/videos/{task_id}/events"),
            client.get("/v1/videos/task_unknown/events"),
        ):
            assert response.status_code == 400
            assert response.json()["error"]["code"] == "task_not_exist"
        bad = client.get(f"/v1/videos/{task_id}/events", headers={"Last-Event-ID": "x1"})
        assert bad.status_code == 400
        assert bad.json()["error"]["code"] == "InvalidParameter"
        assert bad.json()["error"]["param"] == "Last-Event-ID"
        anonymous = httpx.get(f"{manual.base_url}/v1/videos/{task_id}/events")
        assert anonymous.status_code == 401


def _hub_waiting(server: LiveServer) -> int:
    app: Any = server.server.config.app
    return int(app.state.events.waiting)


def test_long_poll_answers_as_soon_as_the_task_changes(manual: LiveServer) -> None:
    with _client(manual) as client:
        task_id = _create(client)
        answer: dict[str, Any] = {}

        def poll() -> None:
            started = time.monotonic()
            answer["response"] = client.get(f"/v1/videos/{task_id}", params={"wait": "30"})
            answer["took"] = time.monotonic() - started

        waiting_before = _hub_waiting(manual)
        poller = threading.Thread(target=poll)
        poller.start()
        wait_until(lambda: _hub_waiting(manual) > waiting_before, timeout=10, what="a waiter")
        assert poller.is_alive()
        _claim(manual, task_id)
        poller.join(timeout=10)
        response = answer["response"]
        assert response.status_code == 200 and answer["took"] < 10
        assert response.json()["status"] == "IN_PROGRESS"
        plain = client.get(f"/v1/videos/{task_id}")
        assert response.content == plain.content  # byte for byte the retrieve
        assert response.headers["content-type"] == plain.headers["content-type"]

        # A change that is already there: at once.
        _finish(manual, task_id)
        started = time.monotonic()
        done = client.get(f"/v1/videos/{task_id}", params={"wait": "30"})
        assert time.monotonic() - started < 5
        assert done.json()["status"] == "SUCCESS"


def test_long_poll_answers_after_n_seconds_without_a_change(manual: LiveServer) -> None:
    with _client(manual) as client:
        task_id = _create(client)
        started = time.monotonic()
        response = client.get(f"/v1/videos/{task_id}?wait=1.5")
        took = time.monotonic() - started
        assert response.status_code == 200
        assert 1.5 <= took < 6, took
        assert response.content == client.get(f"/v1/videos/{task_id}").content


@pytest.mark.parametrize("wait", ["0", "-1", "60.5", "61", "abc", "nan", "inf", "", "1e9"])
def test_long_poll_refuses_a_bad_wait(manual: LiveServer, wait: str) -> None:
    with _client(manual) as client:
        task_id = _create(client)
        response = client.get(f"/v1/videos/{task_id}?wait={wait}")
        assert response.status_code == 400, response.text
        error = response.json()["error"]
        assert (error["code"], error["param"]) == ("InvalidParameter", "wait")
        other = _client(manual, "mallory").get(f"/v1/videos/{task_id}?wait=1")
        assert other.json()["error"]["code"] == "task_not_exist"


def test_only_a_wait_leaves_the_fast_path() -> None:
    def scope(query: bytes) -> dict[str, Any]:
        return {"method": "GET", "path": "/v1/videos/task_x", "query_string": query}

    assert retrieve_id(scope(b"")) == "task_x"  # type: ignore[arg-type]
    assert retrieve_id(scope(b"waiting=1&x=wait")) == "task_x"  # type: ignore[arg-type]
    assert retrieve_id(scope(b"wait=5")) is None  # type: ignore[arg-type]
    assert retrieve_id(scope(b"a=1&wait")) is None  # type: ignore[arg-type]


def test_an_estimated_progress_is_pushed_as_it_rises(manual: LiveServer) -> None:
    """A task at a provider that reports no progress: its estimate, at heartbeat times."""
    store = manual.components.store
    with _client(manual) as client:
        task_id = _create(client)
        now = time.time()
        fields = {"provider": "ark", "upstream_model": MODEL, "submitted_at": now}
        submit = Move(task_id, frozenset({Phase.QUEUED}), Phase.SUBMITTING, now, fields=fields)
        manual.call(store.move(submit))
        watched = {"upstream_id": "cgt-1", "submitted_at": now, "expected_seconds": 3.0}
        watch = Move(task_id, frozenset({Phase.SUBMITTING}), Phase.WATCHING, now, fields=watched)
        manual.call(store.move(watch))
        seen: list[Frame] = []
        with client.stream("GET", f"/v1/videos/{task_id}/events") as response:
            for frame in frames(response):
                seen.append(frame)
                if frame.event == "progress" and sum(f.event == "progress" for f in seen) == 3:
                    end = Move(
                        task_id,
                        frozenset({Phase.WATCHING}),
                        Phase.DONE,
                        time.time(),
                        outcome=Status.FAILED,
                        fields={"error_code": "content_rejected", "error_message": "no"},
                    )
                    manual.call(store.move(end))
        events = _events(seen)
        assert events[0].event == "status" and events[0].video["status"] == "IN_PROGRESS"
        rising = [f for f in events if f.event == "progress"]
        assert len(rising) == 3
        progress = [f.video["progress"] for f in events[:-1]]
        assert progress == sorted(progress) and len(set(progress)) == len(progress), progress
        assert all(f.id == events[0].id for f in rising)  # no new event: the same cursor
        assert events[-1].video["status"] == "FAILED" and events[-1].id > events[0].id  # type: ignore[operator]


def test_a_client_that_leaves_leaves_nothing_behind(manual: LiveServer) -> None:
    with _client(manual) as client:
        task_ids = [_create(client) for _ in range(5)]
        for task_id in task_ids:
            with client.stream("GET", f"/v1/videos/{task_id}/events") as response:
                assert next(frames(response)).event == "status"
        # Each stream's waiter is gone once its connection closed.
        wait_until(lambda: _hub_waiting(manual) == 0, timeout=10, what="no waiter left")
