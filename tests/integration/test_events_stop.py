"""A graceful stop ends the open event streams at once (they would hold it 30 s).

uvicorn waits for open responses before it stops, and an event stream stays open until
its task ends; ``serve`` ends the streams first, and clients resume elsewhere with
Last-Event-ID.
"""

from __future__ import annotations

import signal
from pathlib import Path

import httpx
import pytest

from tests.integration.sse import frames
from tests.procs import ready, spawn_api

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

FIELDS = {"prompt": "a lighthouse", "model": "doubao-seedance-1-0-pro", "seconds": "2"}
STREAM_READ = 20.0  # seconds a read may wait: under uvicorn's graceful timeout (30 s)


def test_sigterm_ends_an_open_stream_and_the_server_stops(tmp_path: Path) -> None:
    # No worker and no heartbeat within the test: the stream would stay silent and open.
    api = spawn_api(tmp_path / "api", {"REELGATE_SSE_HEARTBEAT": "600"}, workers=0)
    try:
        ready(api)
        headers = {"Authorization": f"Bearer {api.first_key()}"}
        timeout = httpx.Timeout(10.0, read=STREAM_READ)
        with httpx.Client(base_url=api.base_url, headers=headers, timeout=timeout) as client:
            task_id = client.post("/v1/videos", data=FIELDS).json()["id"]
            with client.stream("GET", f"/v1/videos/{task_id}/events") as response:
                assert response.status_code == 200
                stream = frames(response)
                first = next(stream)  # the current state: SUBMITTED, nothing will follow
                assert first.video["status"] == "SUBMITTED"
                api.send(signal.SIGTERM)
                rest = list(stream)  # ends when the server closes it (ReadTimeout if not)
        assert [frame for frame in rest if frame.event] == []
        # a graceful stop: uvicorn re-raises the signal it handled, once it has stopped
        assert api.popen.wait(timeout=STREAM_READ) in (0, -signal.SIGTERM), api.output()
    finally:
        api.stop(timeout=10)
