"""Push across processes on PostgreSQL: an API process (``serve --workers 0``) streams the
progress that a separate ``reelgate worker`` process records (LISTEN/NOTIFY).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.sse import frames
from tests.pg import temporary_database
from tests.procs import Proc, ready, spawn_api, spawn_worker, started

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.timeout(180)]

MODEL = "doubao-seedance-1-0-pro"
FIELDS = {"prompt": "a harbour at night", "model": MODEL, "seconds": "2", "resolution": "480p"}


@pytest.fixture
def procs() -> Iterator[list[Proc]]:
    running: list[Proc] = []
    yield running
    for proc in reversed(running):
        proc.stop(timeout=10)


def test_an_api_process_streams_a_worker_process_progress(
    tmp_path: Path, procs: list[Proc]
) -> None:
    with temporary_database() as url:
        settings = {
            "REELGATE_DATABASE_URL": url,
            "REELGATE_STORAGE_URL": f"file://{tmp_path / 'blobs'}",
            "REELGATE_SIGNING_SECRET": "events-scale-out-signing-secret-0123456789",
            "REELGATE_PREVIEW_DELAY": "*=3",
            "REELGATE_SSE_HEARTBEAT": "1",
        }
        api = spawn_api(tmp_path / "api", settings, workers=0)
        procs.append(api)
        ready(api)
        worker = spawn_worker(tmp_path / "worker", settings)
        procs.append(worker)
        headers = {"Authorization": f"Bearer {api.first_key()}"}
        with httpx.Client(base_url=api.base_url, headers=headers, timeout=60) as client:
            # Long-poll first, with no worker running yet: the worker's claim ends the wait.
            task_id = client.post("/v1/videos", data=FIELDS).json()["id"]
            answer: dict[str, Any] = {}

            def poll() -> None:
                answer["video"] = client.get(f"/v1/videos/{task_id}", params={"wait": 60}).json()
                answer["at"] = time.monotonic()

            poller = threading.Thread(target=poll)
            poller.start()
            started(worker)
            poller.join(timeout=60)
            assert answer["video"]["status"] in ("IN_PROGRESS", "SUCCESS"), answer

            # Then a stream of a task from its creation to its end.
            task_id = client.post("/v1/videos", data=FIELDS).json()["id"]
            with client.stream("GET", f"/v1/videos/{task_id}/events") as response:
                assert response.status_code == 200
                stream = list(frames(response))
        events = [frame for frame in stream if frame.event]
        videos = [frame.video for frame in events]
        assert videos[-1]["status"] == "SUCCESS" and videos[-1]["progress"] == 100
        progress = [video["progress"] for video in videos]
        assert progress == sorted(progress)
        assert len({p for p in progress if 0 < p < 100}) >= 3, progress  # the worker's steps
        ids = [frame.id for frame in events]
        assert ids == sorted(set(ids)), ids  # type: ignore[type-var]
