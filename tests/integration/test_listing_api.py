"""``GET /v1/videos`` on a real server: pages, filters, owners, and every bad parameter."""

from __future__ import annotations

import secrets
from typing import Any

import httpx
import pytest

from reelgate.domain.status import Phase, Status
from reelgate.domain.task import Task, TaskSpec, new_task_id
from reelgate.services.tasks import output_key
from tests.server import LiveServer

MODEL, OTHER_MODEL = "doubao-seedance-2-0-fast", "doubao-seedance-1-0-pro"
SIGNED = ("video_url", "expires_at")  # signed afresh on every read


def stored(owner: str, created_at: float, status: Status, model: str = MODEL) -> Task:
    """A task as a finished (or running, never claimable) one is stored: no render starts."""
    spec = TaskSpec(model, "a listed fox", 5, "16:9", "720p")
    task_id = new_task_id()
    if status is Status.IN_PROGRESS:
        return Task(
            task_id,
            owner,
            spec,
            status,
            40,
            created_at,
            created_at,
            attempts=1,
            lease_owner="elsewhere",
            lease_until=4e9,
            phase=Phase.RENDERING,
        )
    return Task(
        task_id,
        owner,
        spec,
        status,
        100 if status is Status.SUCCESS else 30,
        created_at,
        created_at + 60,
        completed_at=created_at + 60,
        attempts=1,
        output_key=output_key(task_id) if status is Status.SUCCESS else None,
        error_code=None if status is Status.SUCCESS else "content_rejected",
        error_message=None if status is Status.SUCCESS else "the renderer rejected the input",
        phase=Phase.DONE,
    )


@pytest.fixture
def owner(live_server: LiveServer) -> tuple[str, list[Task]]:
    """A fresh owner with 25 tasks (newest: index 24), a few FAILED and IN_PROGRESS."""
    name = f"lister-{secrets.token_hex(4)}"
    tasks = []
    for n in range(25):
        status = Status.FAILED if n % 5 == 0 else Status.IN_PROGRESS if n == 7 else Status.SUCCESS
        model = OTHER_MODEL if n % 4 == 0 else MODEL
        tasks.append(stored(name, 1_700_000_000.0 + n * 10, status, model))
    for task in tasks:
        live_server.call(live_server.components.store.create_task(task))
    return name, tasks


def client_of(live_server: LiveServer, owner: str) -> httpx.Client:
    return httpx.Client(
        base_url=live_server.base_url, headers=live_server.headers(owner), timeout=30
    )


def pages(client: httpx.Client, **params: Any) -> list[dict[str, Any]]:
    """Every page from the first, following ``last_id`` while ``has_more``."""
    found = []
    while True:
        response = client.get("/v1/videos", params=params)
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == "application/json"
        body = response.json()
        found.append(body)
        if not body["has_more"]:
            return found
        params = {**params, "after": body["last_id"]}


def test_pages_newest_first_with_items_as_retrieve_shows_them(
    live_server: LiveServer, owner: tuple[str, list[Task]]
) -> None:
    name, tasks = owner
    with client_of(live_server, name) as client:
        got = pages(client, limit=10)
        assert [len(page["data"]) for page in got] == [10, 10, 5]
        assert [page["has_more"] for page in got] == [True, True, False]
        ids = [video["id"] for page in got for video in page["data"]]
        assert ids == [task.id for task in reversed(tasks)]
        for page in got:
            assert page["object"] == "list"
            assert page["first_id"] == page["data"][0]["id"]
            assert page["last_id"] == page["data"][-1]["id"]
        for video in got[0]["data"]:
            one = client.get(f"/v1/videos/{video['id']}").json()
            assert {k: v for k, v in video.items() if k not in SIGNED} == {
                k: v for k, v in one.items() if k not in SIGNED
            }
            assert ("video_url" in video) == ("video_url" in one) == (one["status"] == "SUCCESS")
        default = client.get("/v1/videos").json()
        assert len(default["data"]) == 20 and default["has_more"]


def test_ascending_and_filters(live_server: LiveServer, owner: tuple[str, list[Task]]) -> None:
    name, tasks = owner
    with client_of(live_server, name) as client:
        ids = [v["id"] for p in pages(client, order="asc", limit=7) for v in p["data"]]
        assert ids == [task.id for task in tasks]
        failed = [v["id"] for p in pages(client, status="FAILED", limit=2) for v in p["data"]]
        assert failed == [t.id for t in reversed(tasks) if t.status is Status.FAILED]
        running = client.get("/v1/videos", params={"status": "IN_PROGRESS"}).json()
        assert [v["id"] for v in running["data"]] == [tasks[7].id]
        assert running["data"][0]["progress"] == 40 and running["data"][0]["completed_at"] is None
        other = [v for p in pages(client, model=OTHER_MODEL) for v in p["data"]]
        assert [v["id"] for v in other] == [
            t.id for t in reversed(tasks) if t.spec.model == OTHER_MODEL
        ]
        start, end = tasks[3].created_at, tasks[9].created_at  # [start, end)
        timed = client.get(
            "/v1/videos",
            params={"created_after": int(start), "created_before": int(end), "order": "asc"},
        ).json()
        assert [v["id"] for v in timed["data"]] == [t.id for t in tasks[3:9]]
        assert not timed["has_more"]
        empty = client.get("/v1/videos", params={"model": "no-such-model"}).json()
        assert empty == {
            "object": "list",
            "data": [],
            "has_more": False,
            "first_id": None,
            "last_id": None,
        }


def test_only_the_callers_tasks(live_server: LiveServer, owner: tuple[str, list[Task]]) -> None:
    _, tasks = owner
    stranger = f"stranger-{secrets.token_hex(4)}"
    with client_of(live_server, stranger) as client:
        assert client.get("/v1/videos").json()["data"] == []
        response = client.get("/v1/videos", params={"after": tasks[10].id})
        assert_invalid(response, "after")
    response = httpx.get(f"{live_server.base_url}/v1/videos", timeout=30)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_api_key"


@pytest.mark.parametrize(
    ("query", "param"),
    [
        ("limit=0", "limit"),
        ("limit=101", "limit"),
        ("limit=ten", "limit"),
        ("limit=-1", "limit"),
        ("limit=", "limit"),
        ("limit=5&limit=6", "limit"),
        ("order=newest", "order"),
        ("status=DONE", "status"),
        ("status=success", "status"),
        ("created_after=yesterday", "created_after"),
        ("created_before=1e9", "created_before"),
        ("created_after=-5", "created_after"),
        ("after=", "after"),
        ("after=task_unknown", "after"),
        ("after=%00", "after"),
        ("model=", "model"),
        ("page=2", "page"),
    ],
)
def test_bad_parameters(live_server: LiveServer, query: str, param: str) -> None:
    response = httpx.get(
        f"{live_server.base_url}/v1/videos?{query}", headers=live_server.headers(), timeout=30
    )
    assert_invalid(response, param)


def assert_invalid(response: httpx.Response, param: str) -> None:
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "InvalidParameter"
    assert error["param"] == param
    assert error["type"] == "invalid_request_error"
    assert param in error["message"]
