"""The server on PostgreSQL: the whole flow, and wake-ups through LISTEN/NOTIFY."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from reelgate.settings import Settings
from reelgate.wiring import build
from tests.pg import temporary_database
from tests.server import start_server

pytestmark = pytest.mark.postgres


@pytest.fixture
def pg_url() -> Iterator[str]:
    with temporary_database() as url:
        yield url


def wait_for(client: httpx.Client, task_id: str, statuses: set[str], timeout: float = 30) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        video = client.get(f"/v1/videos/{task_id}").json()
        if video["status"] in statuses:
            return video  # type: ignore[no-any-return]
        time.sleep(0.02)
    raise AssertionError(f"{task_id} never reached {statuses}")


def test_flow_on_postgresql(pg_url: str, tmp_path: Path) -> None:
    server = start_server(tmp_path, database_url=pg_url, renderer="instant", workers=1)
    try:
        client = httpx.Client(base_url=server.base_url, headers=server.headers(), timeout=10)
        created = client.post("/v1/videos", data={"prompt": "pg", "model": "doubao-seedance-2-0"})
        assert created.status_code == 200, created.text
        video = wait_for(client, created.json()["id"], {"SUCCESS"})
        download = httpx.get(video["video_url"])
        assert download.status_code == 200 and download.content[4:8] == b"ftyp"
        other = httpx.get(
            f"{server.base_url}/v1/videos/{video['id']}", headers=server.headers("bob")
        )
        assert other.json()["error"]["code"] == "task_not_exist"
        assert httpx.get(f"{server.base_url}/readyz").json() == {"status": "ready"}
    finally:
        server.stop()


def test_notify_wakes_a_worker_in_another_process_group(pg_url: str, tmp_path: Path) -> None:
    """The API has no worker; a separate worker that polls only every 60 s still starts at once."""
    api = start_server(tmp_path / "api", database_url=pg_url, workers=0)
    settings = Settings(
        data_dir=tmp_path / "worker",
        database_url=pg_url,
        renderer="instant",
        workers=1,
        poll_interval=60.0,
    )
    components = build(settings)
    stop = asyncio.Event()
    loops: list[asyncio.AbstractEventLoop] = []

    async def run_worker() -> None:
        loops.append(asyncio.get_running_loop())
        await components.store.migrate()
        try:
            await components.run_worker(stop)
        finally:
            await components.close()

    thread = threading.Thread(target=asyncio.run, args=(run_worker(),))
    thread.start()
    try:
        time.sleep(1.0)  # the worker's first look finds nothing; its next poll is 60 s away
        client = httpx.Client(base_url=api.base_url, headers=api.headers(), timeout=10)
        created = client.post("/v1/videos", data={"prompt": "wake", "model": "doubao-seedance-2-0"})
        started = time.monotonic()
        wait_for(client, created.json()["id"], {"SUCCESS"}, timeout=10)
        assert time.monotonic() - started < 5, "the worker slept instead of waking up"
    finally:
        loops[0].call_soon_threadsafe(stop.set)
        thread.join(timeout=30)
        api.stop()
