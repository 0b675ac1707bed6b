"""Cancel a task that lives at a (fake) Ark upstream: the provider is told to stop it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from reelgate.backends.remote.fakes.ark import FakeArkSettings, fake_ark_app
from tests.faults.common import Db
from tests.providers.harness import KEY_ENV, Deployment, backend_settings, wait_for, write_config
from tests.upstreams import start_fake

pytestmark = pytest.mark.slow
KEY = "fake-ark-key"
MODEL = "doubao-seedance-2-0"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def deployment(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Deployment]:
    with backend_settings(request.param, tmp_path) as settings:
        deployment = Deployment(tmp_path, {**settings, KEY_ENV: KEY})
        try:
            yield deployment
        finally:
            deployment.stop()


def test_cancel_a_task_watched_at_ark(deployment: Deployment) -> None:
    # Each upstream task queues for 12 s at the fake (a fifth of 60 s): Ark cancels those.
    settings = FakeArkSettings(api_keys=(KEY,), min_seconds=60, max_seconds=60)
    with start_fake(fake_ark_app(settings)) as upstream:
        providers = {"ark": {"kind": "ark", "base_url": upstream.url("/api/v3")}}
        path = write_config(deployment.root / "reelgate.toml", providers, {MODEL: ["ark"]})
        deployment.settings["REELGATE_CONFIG"] = str(path)
        deployment.settings["REELGATE_CANCEL_CHECK"] = "0.5"
        deployment.start_api()
        worker = deployment.start_worker()
        task_id = deployment.create("a kite over the dunes", model=MODEL)
        db = Db(deployment.settings["REELGATE_DATABASE_URL"])

        def upstream_id() -> str | None:
            rows = db.rows("SELECT upstream_id FROM tasks WHERE id = %s", task_id)
            return rows[0][0] if rows else None

        found = wait_for(upstream_id, timeout=30, what="the upstream id")
        with deployment.client as client:
            assert client.get(f"/v1/videos/{task_id}").json()["status"] == "IN_PROGRESS"
            answer = client.post(f"/v1/videos/{task_id}/cancel")
            assert answer.status_code == 200, answer.text
            body = answer.json()
            assert body["status"] == "FAILED" and body["error"]["code"] == "cancelled"
        wait_for(lambda: upstream.stats()["deletes"] >= 1, timeout=10, what="the upstream DELETE")
        headers = {"Authorization": f"Bearer {KEY}"}
        there = httpx.get(
            upstream.url(f"/api/v3/contents/generations/tasks/{found}"), headers=headers
        )
        assert there.json()["status"] == "cancelled", there.text
        line = f"task {task_id} cancelled; ark stopped {found}"
        wait_for(lambda: line in worker.output(), timeout=5, what="the worker's log")
        assert upstream.stats()["deletes"] == 1  # once, not once per notice
        assert "ERROR" not in worker.output() and "Traceback" not in worker.output()
