"""The fast read path answers exactly what the FastAPI route answers, byte for byte.

``GET /v1/videos/{id}`` is served by ``videos.Retrieve`` (a bare ASGI app in front of
FastAPI) and its body written by ``videos.video_json``; the route behind FastAPI and
``video_body`` stay the reference. Each case is asked twice, with the fast path on and
off, at a frozen clock, and the answers must be equal but for the generated request id.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from reelgate.api.app import Api, create_app
from reelgate.api.videos import encode, video_body, video_json
from reelgate.domain.status import Phase, Status
from reelgate.domain.task import Task, TaskSpec
from reelgate.services.tasks import Link, TaskService
from reelgate.settings import Settings
from reelgate.wiring import Components, build

NOW = 1_800_000_000.0
SPEC = TaskSpec("doubao-seedance-2-0-fast", "a prompt", 5, "16:9", "720p")


def variants() -> list[Task]:
    base = Task("task_base", "alice", SPEC, Status.SUBMITTED, 0, NOW - 60, NOW - 60)
    done = {"completed_at": NOW - 5.7, "phase": Phase.DONE}
    return [
        base,
        replace(base, id="task_run", status=Status.IN_PROGRESS, progress=45, phase=Phase.RENDERING),
        replace(
            base,
            id="task_watch",
            status=Status.IN_PROGRESS,
            phase=Phase.WATCHING,
            submitted_at=NOW - 30,
            expected_seconds=60.0,
        ),
        replace(base, id="task_rehost", status=Status.IN_PROGRESS, phase=Phase.REHOSTING),
        replace(
            base,
            id="task_ok",
            status=Status.SUCCESS,
            progress=100,
            output_key="videos/task_ok.1.mp4",
            **done,
        ),
        replace(
            base,
            id="task_failed",
            status=Status.FAILED,
            progress=12,
            error_code="content_rejected",
            error_message='rejected: "quotes", \\ backslash, é, 字, \n newline, \x01',
            **done,
        ),
        replace(base, id="task_error", status=Status.ERROR, error_code="render_error", **done),
        replace(base, id="task_\u00e9\u2713", spec=replace(SPEC, model="doubao-seedance-1-0-pro")),
    ]


@pytest.fixture
def components(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Components:
    monkeypatch.setattr(time, "time", lambda: NOW)  # the clock build() hands every service
    settings = Settings(data_dir=tmp_path, workers=0, signing_secret="s" * 40)
    return build(settings)


@pytest.mark.parametrize("task", variants(), ids=lambda task: task.id)
def test_video_json_is_encode_of_video_body(components: Components, task: Task) -> None:
    assert video_json(task, components.tasks) == encode(video_body(task, components.tasks))


def test_video_json_with_a_presigned_link(components: Components) -> None:
    class Presigning(TaskService):
        def link(self, task: Task) -> Link | None:
            return Link('https://bucket.example/v.mp4?a=1&b="2"&c=é', 1_800_003_600)

    tasks = Presigning(
        components.store,
        components.blobs,
        components.catalog,
        components.clock,
        components.signer,
        public_url="http://x",
        url_ttl=60,
    )
    task = variants()[4]
    assert video_json(task, tasks) == encode(video_body(task, tasks))


@pytest.fixture
def client(components: Components) -> Iterator[tuple[TestClient, Api, dict[str, str]]]:
    app = create_app(components, embedded_worker=False)
    assert isinstance(app, Api)
    with TestClient(app, raise_server_exceptions=False) as client:
        for task in variants():
            client.portal.call(components.store.create_task, task)  # type: ignore[union-attr]
        keys: dict[str, str] = {}
        for owner in ("alice", "bob", "revoked"):
            _, keys[owner] = client.portal.call(components.keys.create, owner)  # type: ignore[union-attr]
        listed = client.portal.call(components.keys.list)  # type: ignore[union-attr]
        revoked = next(key for key in listed if key.owner == "revoked")
        client.portal.call(components.keys.revoke, revoked.id)  # type: ignore[union-attr]
        yield client, app, keys


def requests(keys: dict[str, str]) -> list[tuple[str, dict[str, str]]]:
    alice = {"Authorization": f"Bearer {keys['alice']}"}
    cases = [(f"/v1/videos/{task.id}", alice) for task in variants()]
    cases += [
        ("/v1/videos/task_ok", {"Authorization": f"Bearer {keys['bob']}"}),  # another owner's
        ("/v1/videos/task_nope", alice),
        ("/v1/videos/task_ok", {}),
        ("/v1/videos/task_ok", {"Authorization": "Basic abc"}),
        ("/v1/videos/task_ok", {"Authorization": "Bearer rg_wrong"}),
        ("/v1/videos/task_ok", {"Authorization": f"Bearer {keys['revoked']}"}),
        ("/v1/videos/task_ok", {"Authorization": f"bearer   {keys['alice']}"}),
        ("/v1/videos/task_ok", {**alice, "X-Request-Id": "trace-123"}),
        ("/v1/videos/task_ok", {**alice, "X-Request-Id": "x" * 200}),  # not echoed
        ("/v1/videos/task_ok?extra=1", alice),
        ("/v1/videos/a%2Fb", alice),
        ("/v1/videos/", alice),
    ]
    return cases


def answer(client: TestClient, path: str, headers: dict[str, str]) -> tuple[object, ...]:
    response = client.get(path, headers=headers)
    raw = [(k, v) for k, v in response.headers.multi_items() if k not in ("x-request-id", "date")]
    request_id = response.headers["x-request-id"]
    echoed = request_id if not request_id.startswith("req_") else "req_"
    return response.status_code, raw, response.content, echoed


def test_the_fast_path_answers_as_the_route_does(
    client: tuple[TestClient, Api, dict[str, str]],
) -> None:
    http, app, keys = client
    fast = app.retrieve
    assert fast is not None
    for path, headers in requests(keys):
        app.retrieve = fast
        first = answer(http, path, headers)
        app.retrieve = None  # FastAPI's route, dependencies and middleware
        second = answer(http, path, headers)
        assert first == second, path


def test_an_unexpected_error_is_a_500_with_the_request_id(
    client: tuple[TestClient, Api, dict[str, str]],
    components: Components,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    http, _, keys = client

    async def explode(owner: str, task_id: str) -> Task:
        raise RuntimeError("secret internals")

    monkeypatch.setattr(components.tasks, "get", explode)
    response = http.get("/v1/videos/task_ok", headers={"Authorization": f"Bearer {keys['alice']}"})
    assert response.status_code == 500
    error = response.json()["error"]
    assert error["code"] == "internal_error"
    assert response.headers["x-request-id"] in error["message"]
    assert "secret internals" not in response.text


@pytest.mark.parametrize("size", [32, 63, 64, 65, 200])
def test_signatures_are_hmac_sha256(size: int) -> None:
    import base64
    import hashlib
    import hmac
    import os
    from urllib.parse import urlencode

    from reelgate.services.signing import Signer

    secret = os.urandom(size)
    signer = Signer(secret)
    for expires in (0, 1_800_003_600, 10**12 - 1):
        path = f"/files/videos/task_{os.urandom(8).hex()}.1.mp4"
        mac = hmac.new(secret, f"{path}\n{expires}".encode(), hashlib.sha256).digest()
        expected = base64.urlsafe_b64encode(mac).rstrip(b"=").decode()
        assert signer.signature(path, expires) == expected
        query = urlencode({"expires": expires, "signature": expected})
        assert signer.sign("http://h", path, expires) == f"http://h{path}?{query}"
        signer.verify(path, str(expires), expected, now=0)
