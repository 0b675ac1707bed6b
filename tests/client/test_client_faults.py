"""Fault injection over real HTTP, against the stand-in server (``fakeserver.py``).

Cut connections, expired signed URLs, 429 and 5xx on demand, stalls, refusals:
what a healthy real server will not do when asked.
"""

from __future__ import annotations

import itertools
import socket
import time
from pathlib import Path

import httpx
import pytest
from fakeserver import FakeServer, tiny_png

from reelgate.client import (
    APIConnectionError,
    APITimeoutError,
    AsyncClient,
    Client,
    NotFoundError,
    RetryPolicy,
    ServerError,
    TaskFailed,
    TaskNotFound,
    Video,
    WaitTimeout,
)

POLL = 0.05
MODEL = "doubao-seedance-2-0-fast"
FAST = RetryPolicy(max_retries=3, initial_backoff=0.01, max_backoff=0.05)


def finished(client: Client) -> Video:
    return client.videos.create_and_wait("a fox", model=MODEL, poll_interval=POLL, timeout=10)


def file_statuses(server: FakeServer) -> list[tuple[int, str | None]]:
    return [(entry.status, entry.headers.get("Range")) for entry in server.requests_to("/files/")]


def leftovers(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.iterdir() if path.name.endswith(".part"))


# --- download -----------------------------------------------------------------------------------


def test_download_resumes_after_the_connection_is_cut(
    client: Client, fake_server: FakeServer, tmp_path: Path
) -> None:
    video = finished(client)
    fake_server.cut_next_downloads(1)
    path = client.videos.download(video, tmp_path / "fox.mp4")
    assert path.read_bytes() == fake_server.video
    half = len(fake_server.video) // 2
    assert file_statuses(fake_server) == [(200, None), (206, f"bytes={half}-")]
    assert leftovers(tmp_path) == []


def test_download_fetches_a_fresh_url_when_the_signed_one_expired(
    client: Client, fake_server: FakeServer, tmp_path: Path
) -> None:
    video = finished(client)
    fake_server.expire_urls()
    path = client.videos.download(video, tmp_path)
    assert path == tmp_path / f"{video.id}.mp4" and path.read_bytes() == fake_server.video
    statuses = [(e.method, e.path.split("?")[0], e.status) for e in fake_server.log[-3:]]
    assert statuses == [
        ("GET", f"/files/{video.id}.mp4", 403),
        ("GET", f"/v1/videos/{video.id}", 200),
        ("GET", f"/files/{video.id}.mp4", 200),
    ]


def test_download_resumes_on_a_fresh_url_after_a_cut_and_an_expiry(
    client: Client, fake_server: FakeServer, tmp_path: Path
) -> None:
    video = finished(client)
    fake_server.cut_next_downloads(1, then_expire=True)
    path = client.videos.download(video, tmp_path / "x.mp4")
    assert path.read_bytes() == fake_server.video
    half = len(fake_server.video) // 2
    assert file_statuses(fake_server) == [
        (200, None),
        (403, f"bytes={half}-"),
        (206, f"bytes={half}-"),
    ]


def test_a_failed_download_leaves_no_file_behind(
    client: Client, fake_server: FakeServer, tmp_path: Path
) -> None:
    video = finished(client)
    fake_server.fail_next(404, route="file")
    with pytest.raises(NotFoundError):
        client.videos.download(video, tmp_path / "fox.mp4")
    assert list(tmp_path.iterdir()) == []


async def test_async_download_resumes_and_refreshes(
    fake_server: FakeServer, tmp_path: Path
) -> None:
    async with AsyncClient(fake_server.base_url, fake_server.api_key, retry=FAST) as client:
        video = await client.videos.create_and_wait("a fox", model=MODEL, poll_interval=POLL)
        fake_server.cut_next_downloads(1)
        first = await client.videos.download(video, tmp_path / "cut.mp4")
        fake_server.expire_urls()
        second = await client.videos.download(video, tmp_path / "expired.mp4")
    assert first.read_bytes() == second.read_bytes() == fake_server.video
    assert [status for status, _ in file_statuses(fake_server)] == [200, 206, 403, 200]


# --- transient failures ---------------------------------------------------------------------------


def test_requests_honour_retry_after_on_429(client: Client, fake_server: FakeServer) -> None:
    task = client.videos.create("a fox", model=MODEL)
    fake_server.fail_next(429, headers={"Retry-After": "0.3"})
    assert client.videos.retrieve(task.id).id == task.id
    limited, retried = fake_server.requests_to("/v1/videos/")
    assert (limited.status, retried.status) == (429, 200)
    assert retried.at - limited.at >= 0.3


def test_wait_rides_out_server_errors(client: Client, fake_server: FakeServer) -> None:
    task = client.videos.create("a fox", model=MODEL)
    fake_server.fail_next(503, count=2)
    fake_server.fail_next(500)
    assert client.videos.wait(task.id, poll_interval=POLL, timeout=10).succeeded


def test_server_errors_are_raised_once_the_retries_are_spent(
    client: Client, fake_server: FakeServer
) -> None:
    fake_server.fail_next(500, count=4)
    with pytest.raises(ServerError) as caught:
        client.videos.retrieve("task_x")
    assert caught.value.status == 500 and caught.value.request_id
    assert len(fake_server.requests_to("/v1/")) == 4


def test_create_is_not_repeated_after_a_500(client: Client, fake_server: FakeServer) -> None:
    fake_server.fail_next(500)
    with pytest.raises(ServerError):
        client.videos.create("a fox", model=MODEL)
    assert len(fake_server.requests_to("/v1/videos")) == 1


def test_wait_never_polls_sooner_than_the_server_asks(
    client: Client, fake_server: FakeServer
) -> None:
    fake_server.poll_after_ms = 150
    task = client.videos.create("a fox", model=MODEL)
    client.videos.wait(task.id, poll_interval=POLL, timeout=10)
    polls = [entry.at for entry in fake_server.requests_to(f"/v1/videos/{task.id}")]
    assert len(polls) == fake_server.steps
    assert min(b - a for a, b in itertools.pairwise(polls)) >= 0.15


def test_an_unreachable_server_is_a_connection_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with (
        Client(f"http://127.0.0.1:{port}", "k", retry=FAST) as client,
        pytest.raises(APIConnectionError),
    ):
        client.videos.retrieve("task_x")


def test_a_stalled_server_is_a_timeout(fake_server: FakeServer) -> None:
    fake_server.stall(1.0)
    client = Client(fake_server.base_url, fake_server.api_key, timeout=0.2, max_retries=0)
    with client, pytest.raises(APITimeoutError):
        client.videos.retrieve("task_x")


# --- terminal outcomes -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("marker", "status", "code"),
    [("[fail]", "FAILED", "content_rejected"), ("[error]", "ERROR", "render_error")],
)
def test_wait_raises_task_failed_with_the_servers_reason(
    client: Client, marker: str, status: str, code: str
) -> None:
    seen: list[Video] = []
    with pytest.raises(TaskFailed) as caught:
        client.videos.create_and_wait(
            f"a fox {marker}", model=MODEL, poll_interval=POLL, on_progress=seen.append
        )
    assert caught.value.task_status == status and caught.value.code == code
    assert caught.value.video.error is not None and caught.value.reason
    assert seen[0].status == "SUBMITTED" and seen[-1].status == status


async def test_async_wait_awaits_its_callback_and_raises_task_failed(
    fake_server: FakeServer,
) -> None:
    seen: list[int] = []

    async def on_progress(video: Video) -> None:
        seen.append(video.progress)

    async with AsyncClient(fake_server.base_url, fake_server.api_key, retry=FAST) as client:
        task = await client.videos.create("a fox [error]", model=MODEL)
        with pytest.raises(TaskFailed):
            await client.videos.wait(task.id, poll_interval=POLL, on_progress=on_progress)
    assert seen == [33, 66, 66]


def test_wait_times_out_with_the_last_state(client: Client, fake_server: FakeServer) -> None:
    fake_server.steps = 10_000
    task = client.videos.create("a slow fox", model=MODEL)
    started = time.monotonic()
    with pytest.raises(WaitTimeout) as caught:
        client.videos.wait(task.id, poll_interval=POLL, timeout=0.3)
    assert 0.3 <= time.monotonic() - started < 1.5
    assert caught.value.task_id == task.id and caught.value.video is not None
    assert caught.value.video.status == "IN_PROGRESS"


def test_another_owners_task_does_not_exist(client: Client, fake_server: FakeServer) -> None:
    task = client.videos.create("a fox", model=MODEL)
    with (
        Client(fake_server.base_url, "rg-other-key", retry=FAST) as other,
        pytest.raises(TaskNotFound),
    ):
        other.videos.retrieve(task.id)


def test_the_reference_image_arrives_intact(
    client: Client, fake_server: FakeServer, tmp_path: Path
) -> None:
    path = tmp_path / "ref.png"
    path.write_bytes(tiny_png())
    task = client.videos.create("the image, moving", model=MODEL, input_reference=path)
    assert fake_server.tasks[task.id].image == ("ref.png", "image/png", tiny_png())
    with path.open("rb") as handle:
        task = client.videos.create("again", model=MODEL, input_reference=handle, seconds="6")
    assert fake_server.tasks[task.id].fields["seconds"] == "6"


def test_settings_come_from_the_environment_and_a_given_pool_stays_open(
    fake_server: FakeServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REELGATE_BASE_URL", fake_server.base_url + "/v1")
    monkeypatch.setenv("REELGATE_API_KEY", fake_server.api_key)
    pool = httpx.Client()
    with Client(http_client=pool) as client:
        assert client.base_url == fake_server.base_url
        task = client.videos.create("a fox", model=MODEL)
    assert not pool.is_closed
    assert pool.get(f"{fake_server.base_url}/v1/videos/{task.id}").status_code == 401
    pool.close()
