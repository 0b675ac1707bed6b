"""``GET|HEAD /v1/videos/{id}/content`` on a real server: the MP4 and its thumbnail.

One real preview render (2 s at 480p), downloaded with the bearer key and decoded with
PyAV; its thumbnail decoded with Pillow; Range, HEAD, ETag and refusals in the envelope.
"""

from __future__ import annotations

import io
import secrets
import time
from typing import Any

import av
import httpx
import pytest
from PIL import Image

from reelgate.domain.status import Phase, Status
from reelgate.domain.task import Task, TaskSpec, new_task_id
from reelgate.services.tasks import output_key, thumbnail_key
from tests.server import LiveServer

pytestmark = pytest.mark.slow

MODEL = "doubao-seedance-1-0-pro"
WIDTH, HEIGHT, FRAMES = 854, 480, 2 * 24


@pytest.fixture(scope="module")
def finished(live_server: LiveServer) -> dict[str, Any]:
    """A task rendered to SUCCESS for alice, as GET /v1/videos/{id} last showed it."""
    with httpx.Client(
        base_url=live_server.base_url, headers=live_server.headers(), timeout=30
    ) as client:
        fields = {"prompt": "a lighthouse at dusk", "model": MODEL, "seconds": "2"}
        created = client.post("/v1/videos", data={**fields, "resolution": "480p"})
        assert created.status_code == 200, created.text
        task_id = created.json()["id"]
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            video = client.get(f"/v1/videos/{task_id}").json()
            if video["status"] in ("SUCCESS", "FAILED", "ERROR"):
                assert video["status"] == "SUCCESS", video
                return dict(video)
            time.sleep(0.05)
    raise AssertionError(f"task {task_id} did not finish")


@pytest.fixture
def client(live_server: LiveServer) -> httpx.Client:
    return httpx.Client(base_url=live_server.base_url, headers=live_server.headers(), timeout=30)


def decode(data: bytes) -> tuple[int, int, int]:
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.video[0]
        frames = sum(1 for _ in container.decode(stream))
        return stream.codec_context.width, stream.codec_context.height, frames


def test_the_whole_video_with_the_key(client: httpx.Client, finished: dict[str, Any]) -> None:
    response = client.get(f"/v1/videos/{finished['id']}/content")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "video/mp4"
    assert response.headers["content-length"] == str(len(response.content))
    assert response.headers["accept-ranges"] == "bytes"
    assert f'filename="{finished["id"]}.mp4"' in response.headers["content-disposition"]
    assert decode(response.content) == (WIDTH, HEIGHT, FRAMES)
    signed = httpx.get(finished["video_url"], timeout=30)  # the same file as the signed link
    assert signed.content == response.content
    assert client.get(f"/v1/videos/{finished['id']}/content?variant=video").content == (
        response.content
    )


def test_range_head_and_etag(client: httpx.Client, finished: dict[str, Any]) -> None:
    path = f"/v1/videos/{finished['id']}/content"
    whole = client.get(path)
    size = len(whole.content)
    part = client.get(path, headers={"Range": "bytes=100-1099"})
    assert part.status_code == 206
    assert part.content == whole.content[100:1100]
    assert part.headers["content-range"] == f"bytes 100-1099/{size}"
    tail = client.get(path, headers={"Range": "bytes=-10"})
    assert tail.status_code == 206 and tail.content == whole.content[-10:]
    outside = client.get(path, headers={"Range": f"bytes={size}-"})
    assert outside.status_code == 416
    assert outside.json()["error"]["code"] == "range_not_satisfiable"
    head = client.head(path)
    assert head.status_code == 200 and head.content == b""
    assert head.headers["content-length"] == str(size)
    assert head.headers["etag"] == whole.headers["etag"]
    etag = whole.headers["etag"]
    same = client.get(path, headers={"If-None-Match": etag})
    assert same.status_code == 304 and same.content == b""
    assert same.headers["etag"] == etag
    assert client.get(path, headers={"If-None-Match": '"other"'}).status_code == 200
    assert client.get(path, headers={"If-None-Match": f'"x", W/{etag}'}).status_code == 304


def test_thumbnail_is_a_jpeg_of_the_videos_size(
    client: httpx.Client, finished: dict[str, Any]
) -> None:
    path = f"/v1/videos/{finished['id']}/content"
    response = client.get(path, params={"variant": "thumbnail"})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/jpeg"
    assert f'filename="{finished["id"]}.jpg"' in response.headers["content-disposition"]
    image = Image.open(io.BytesIO(response.content))
    assert image.format == "JPEG" and image.size == (WIDTH, HEIGHT)
    image.load()  # the whole picture decodes
    head = client.head(path, params={"variant": "thumbnail"})
    assert head.headers["content-length"] == str(len(response.content))


@pytest.mark.parametrize(
    ("query", "param", "says"),
    [
        ("variant=spritesheet", "variant", "spritesheet is not offered"),
        ("variant=poster", "variant", "video or thumbnail"),
        ("variant=video&variant=thumbnail", "variant", "once"),
        ("format=mp4", "format", "only variant"),
    ],
)
def test_refused_variants(
    client: httpx.Client, finished: dict[str, Any], query: str, param: str, says: str
) -> None:
    response = client.get(f"/v1/videos/{finished['id']}/content?{query}")
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert (error["code"], error["param"]) == ("InvalidParameter", param)
    assert says in error["message"]


def test_a_task_not_finished_is_refused(client: httpx.Client, live_server: LiveServer) -> None:
    running = Task(
        new_task_id(),
        "alice",
        TaskSpec(MODEL, "still going", 5, "16:9", "720p"),
        Status.IN_PROGRESS,
        30,
        time.time(),
        time.time(),
        attempts=1,
        lease_owner="elsewhere",
        lease_until=4e9,  # held by a worker that never ends: never claimable here
        phase=Phase.RENDERING,
    )
    live_server.call(live_server.components.store.create_task(running))
    for variant in ("video", "thumbnail"):
        response = client.get(f"/v1/videos/{running.id}/content", params={"variant": variant})
        assert response.status_code == 409, response.text
        error = response.json()["error"]
        assert error["code"] == "video_not_ready"
        assert "IN_PROGRESS" in error["message"]


def test_files_no_longer_stored_are_404(client: httpx.Client, live_server: LiveServer) -> None:
    task_id = new_task_id()
    now = time.time()
    gone = Task(
        task_id,
        "alice",
        TaskSpec(MODEL, "long gone", 5, "16:9", "720p"),
        Status.SUCCESS,
        100,
        now,
        now,
        completed_at=now,
        attempts=1,
        output_key=output_key(task_id),
        phase=Phase.DONE,
    )
    live_server.call(live_server.components.store.create_task(gone))
    for variant in ("video", "thumbnail"):
        response = client.get(f"/v1/videos/{task_id}/content", params={"variant": variant})
        assert response.status_code == 404, response.text
        assert response.json()["error"]["code"] == "not_found"
    assert thumbnail_key(task_id) == f"thumbnails/{task_id}.1.jpg"


def test_other_owners_and_unknown_ids(live_server: LiveServer, finished: dict[str, Any]) -> None:
    stranger = live_server.headers(f"stranger-{secrets.token_hex(4)}")
    url = f"{live_server.base_url}/v1/videos/{finished['id']}/content"
    response = httpx.get(url, headers=stranger, timeout=30)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "task_not_exist"
    unknown = httpx.get(
        f"{live_server.base_url}/v1/videos/task_unknown/content",
        headers=live_server.headers(),
        timeout=30,
    )
    assert unknown.json()["error"]["code"] == "task_not_exist"
    anonymous = httpx.get(url, timeout=30)
    assert anonymous.status_code == 401
    assert anonymous.json()["error"]["code"] == "invalid_api_key"
