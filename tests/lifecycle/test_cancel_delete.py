"""Cancel and delete on a real server (``reelgate serve`` with its embedded worker, and an
API process with a separate ``reelgate worker`` on PostgreSQL): queued tasks end at once,
a render's process is killed within seconds, finished tasks refuse a cancel, a delete
removes the files and the id, and another owner's tasks stay untouched."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.faults.common import (
    Db,
    client,
    gone,
    render_children,
    rendering,
    start_server,
)
from tests.pg import temporary_database
from tests.procs import Api, Proc, child_env, ready, spawn_api, spawn_worker, started

pytestmark = pytest.mark.slow
SLOW = "doubao-seedance-1-0-pro"  # renders for a minute in these tests
FAST = "doubao-seedance-1-5-pro"  # renders at once
SETTINGS = {"REELGATE_PREVIEW_DELAY": f"{SLOW}=60", "REELGATE_MIN_FREE_BYTES": "0"}


def wait_for(check: Any, *, timeout: float, what: str) -> Any:
    """Wait on a real condition, with a deadline."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def create(http: httpx.Client, model: str, seconds: int) -> str:
    data = {"prompt": "a lighthouse", "model": model, "seconds": str(seconds), "resolution": "480p"}
    response = http.post("/v1/videos", data=data)
    assert response.status_code == 200, response.text
    return str(response.json()["id"])


def get(http: httpx.Client, task_id: str) -> dict[str, Any]:
    response = http.get(f"/v1/videos/{task_id}")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def assert_error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code, response.text
    assert response.headers["x-request-id"]


def render_of(pid: int, task_id: str) -> int | None:
    """The render process of ``pid`` that has ``task_id``'s scratch video open."""
    return next((c for c in render_children(pid) if rendering(c) == task_id), None)


def assert_cancelled(body: dict[str, Any], task_id: str) -> None:
    assert body["id"] == body["task_id"] == task_id and body["object"] == "video"
    assert body["status"] == "FAILED" and isinstance(body["completed_at"], int)
    assert body["error"] == {"code": "cancelled", "message": "the task was cancelled"}
    assert "video_url" not in body


def other_key(database_url: str, data_dir: Path) -> str:
    """A key of another owner, made with ``reelgate keys create``."""
    argv = ["keys", "create", "--owner", "mallory", "--name", "other"]
    argv += ["--data-dir", str(data_dir), "--database-url", database_url]
    command = [sys.executable, "-m", "reelgate", *argv]
    done = subprocess.run(command, capture_output=True, text=True, check=True, env=child_env({}))
    return done.stdout.strip().splitlines()[-1]


@pytest.fixture
def api(tmp_path: Path) -> Any:
    server = start_server(
        tmp_path / "data", f"sqlite:///{tmp_path / 'data' / 'reelgate.db'}", workers=1, **SETTINGS
    )
    try:
        yield server
    finally:
        server.stop(timeout=10)


def test_cancel_a_render_and_a_queued_task_then_refuse_a_finished_one(api: Api) -> None:
    with client(api) as http:
        busy = create(http, SLOW, 2)
        child = wait_for(lambda: render_of(api.pid, busy), timeout=30, what="the render")
        queued = create(http, SLOW, 2)  # the one slot is taken: it waits
        assert get(http, queued)["status"] == "SUBMITTED"

        answer = http.post(f"/v1/videos/{queued}/cancel")
        assert answer.status_code == 200, answer.text
        assert_cancelled(answer.json(), queued)
        assert_cancelled(get(http, queued), queued)

        started_at = time.monotonic()
        answer = http.post(f"/v1/videos/{busy}/cancel")
        assert answer.status_code == 200, answer.text
        assert_cancelled(answer.json(), busy)
        wait_for(lambda: gone(child), timeout=5, what="the render process to end")
        assert time.monotonic() - started_at < 5
        scratch = api.data_dir / "scratch"
        wait_for(lambda: not list(scratch.glob(f"*{busy}*")), timeout=5, what="no scratch file")
        assert_cancelled(get(http, busy), busy)

        # A retried cancel is answered as the first was; a finished task refuses one.
        again = http.post(f"/v1/videos/{busy}/cancel")
        assert again.status_code == 200 and again.json()["status"] == "FAILED"
        done = create(http, FAST, 4)
        wait_for(lambda: get(http, done)["status"] == "SUCCESS", timeout=60, what="SUCCESS")
        assert_error(http.post(f"/v1/videos/{done}/cancel"), 409, "task_not_cancellable")
        assert get(http, done)["status"] == "SUCCESS"
        assert_error(http.post("/v1/videos/task_nope/cancel"), 400, "task_not_exist")
    log = api.output()
    assert f"task {busy} cancelled; its render stopped" in log
    assert "ERROR" not in log and "Traceback" not in log
    assert "handed task" not in log  # a cancelled render is not handed back


def test_delete_removes_files_and_id_and_spares_other_owners(api: Api, tmp_path: Path) -> None:
    blobs = api.data_dir / "blobs"
    with client(api) as http:
        done = create(http, FAST, 4)
        wait_for(lambda: get(http, done)["status"] == "SUCCESS", timeout=60, what="SUCCESS")
        files = sorted(p.relative_to(blobs) for p in blobs.rglob(f"*{done}*"))
        assert Path(f"videos/{done}.1.mp4") in files, files
        running = create(http, SLOW, 2)
        child = wait_for(lambda: render_of(api.pid, running), timeout=30, what="the render")

        mallory = other_key(f"sqlite:///{api.data_dir / 'reelgate.db'}", tmp_path / "keys")
        headers = {"Authorization": f"Bearer {mallory}"}
        with httpx.Client(base_url=api.base_url, headers=headers, timeout=30) as other:
            assert_error(other.delete(f"/v1/videos/{done}"), 400, "task_not_exist")
            assert_error(other.post(f"/v1/videos/{running}/cancel"), 400, "task_not_exist")
            theirs = create(other, FAST, 4)
        assert get(http, done)["status"] == "SUCCESS" and list(blobs.rglob(f"*{done}*"))

        answer = http.delete(f"/v1/videos/{done}")
        assert answer.status_code == 200, answer.text
        assert answer.json() == {"id": done, "object": "video.deleted", "deleted": True}
        assert list(blobs.rglob(f"*{done}*")) == []
        assert_error(http.get(f"/v1/videos/{done}"), 400, "task_not_exist")
        assert_error(http.delete(f"/v1/videos/{done}"), 400, "task_not_exist")
        assert_error(http.post(f"/v1/videos/{done}/cancel"), 400, "task_not_exist")

        answer = http.delete(f"/v1/videos/{running}")  # cancels the render first
        assert answer.status_code == 200, answer.text
        wait_for(lambda: gone(child), timeout=5, what="the render process to end")
        assert_error(http.get(f"/v1/videos/{running}"), 400, "task_not_exist")
        assert_error(http.delete("/v1/videos/task_nope"), 400, "task_not_exist")
    db = Db(f"sqlite:///{api.data_dir / 'reelgate.db'}")
    for task_id in (done, running):
        assert db.rows("SELECT COUNT(*) FROM tasks WHERE id = %s", task_id) == [(0,)]
        assert db.rows("SELECT COUNT(*) FROM task_events WHERE task_id = %s", task_id) == [(0,)]
    headers = {"Authorization": f"Bearer {mallory}"}
    with httpx.Client(base_url=api.base_url, headers=headers, timeout=30) as other:
        assert other.get(f"/v1/videos/{theirs}").status_code == 200
    assert "Traceback" not in api.output()


@pytest.mark.postgres
def test_a_worker_process_stops_a_render_cancelled_in_the_api(tmp_path: Path) -> None:
    """Across processes: the worker reads the cancel log (REELGATE_CANCEL_CHECK)."""
    procs: list[Proc] = []
    with temporary_database() as url:
        settings = {
            **SETTINGS,
            "REELGATE_DATABASE_URL": url,
            "REELGATE_STORAGE_URL": f"file://{tmp_path / 'blobs'}",
            "REELGATE_SIGNING_SECRET": "s" * 40,
            "REELGATE_POLL_INTERVAL": "0.3",
            "REELGATE_CANCEL_CHECK": "0.5",
        }
        try:
            api = ready(spawn_api(tmp_path / "api", settings))
            procs.append(api)
            worker = started(spawn_worker(tmp_path / "worker", settings))
            procs.append(worker)
            with client(api) as http:
                task_id = create(http, SLOW, 2)
                child = wait_for(
                    lambda: render_of(worker.pid, task_id), timeout=30, what="the render"
                )
                started_at = time.monotonic()
                answer = http.post(f"/v1/videos/{task_id}/cancel")
                assert answer.status_code == 200, answer.text
                assert_cancelled(answer.json(), task_id)
                wait_for(lambda: gone(child), timeout=5, what="the render process to end")
                assert time.monotonic() - started_at < 5
                pattern = f"task {task_id} cancelled; its render stopped"
                wait_for(lambda: pattern in worker.output(), timeout=5, what="the worker's log")
                assert_cancelled(get(http, task_id), task_id)
            assert "ERROR" not in worker.output() and "Traceback" not in worker.output()
        finally:
            for proc in procs:
                proc.stop(timeout=10)
