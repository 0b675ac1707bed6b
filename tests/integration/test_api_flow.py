"""The whole flow on the embedded defaults: create, poll, download, decode the MP4."""

from __future__ import annotations

import io
import time
from typing import Any

import av
import httpx
import numpy as np
import pytest
from PIL import Image

from tests.server import LiveServer

pytestmark = pytest.mark.slow


def wait(
    client: httpx.Client, task_id: str, timeout: float = 120
) -> tuple[dict[str, Any], list[int]]:
    """Poll until terminal; return the last body and every progress value seen."""
    seen: list[int] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        response = client.get(f"/v1/videos/{task_id}")
        assert response.status_code == 200, response.text
        video = response.json()
        seen.append(video["progress"])
        if video["status"] in ("SUCCESS", "FAILED", "ERROR"):
            return video, seen
        assert video["completed_at"] is None and "video_url" not in video
        time.sleep(0.05)
    raise AssertionError(f"task {task_id} did not finish")


@pytest.fixture
def client(live_server: LiveServer) -> httpx.Client:
    return httpx.Client(base_url=live_server.base_url, headers=live_server.headers(), timeout=30)


def decode(data: bytes) -> tuple[Any, list[np.ndarray]]:
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.video[0]
        frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(stream)]
        return stream, frames


@pytest.mark.parametrize(
    ("body", "size"),
    [
        (
            {
                "seconds": "2",
                "size": "16:9",
                "resolution": "480p",
                "model": "doubao-seedance-1-0-pro",
            },
            (854, 480),
        ),
        (
            {
                "seconds": "4",
                "size": "9:16",
                "resolution": "480p",
                "model": "doubao-seedance-2-0-fast",
            },
            (480, 854),
        ),
    ],
)
def test_create_poll_download_decode(
    client: httpx.Client, body: dict[str, str], size: tuple[int, int]
) -> None:
    files = {name: (None, value) for name, value in {"prompt": "a red fox", **body}.items()}
    created = client.post("/v1/videos", files=files)
    assert created.status_code == 200, created.text
    first = created.json()
    assert first["status"] == "SUBMITTED" and first["progress"] == 0
    assert first["id"] == first["task_id"] and first["object"] == "video"
    assert first["model"] == body["model"] and isinstance(first["created_at"], int)

    video, seen = wait(client, first["id"])
    assert video["status"] == "SUCCESS" and video["progress"] == 100
    assert seen == sorted(seen), "progress went down"
    assert set(video) >= {
        "id",
        "object",
        "model",
        "status",
        "progress",
        "created_at",
        "completed_at",
        "video_url",
        "expires_at",
    }
    assert video["completed_at"] >= video["created_at"]

    download = httpx.get(video["video_url"])
    assert download.status_code == 200
    assert download.headers["content-type"] == "video/mp4"
    assert int(download.headers["content-length"]) == len(download.content)
    stream, frames = decode(download.content)
    seconds = int(body["seconds"])
    assert stream.codec_context.name == "h264" and stream.codec_context.pix_fmt == "yuv420p"
    assert (stream.width, stream.height) == size
    assert len(frames) == seconds * 24
    assert float(stream.duration * stream.time_base) == pytest.approx(seconds, abs=1 / 24)


def test_image_to_video_starts_on_the_image(client: httpx.Client) -> None:
    image = Image.new("RGB", (640, 360), (30, 120, 220))
    image.paste((250, 200, 20), (200, 100, 440, 260))
    png = io.BytesIO()
    image.save(png, "PNG")
    files = {
        "prompt": (None, "the sun rises"),
        "model": (None, "doubao-seedance-2-0"),
        "seconds": (None, "4"),
        "resolution": (None, "480p"),
        "input_reference": ("sun.png", png.getvalue(), "image/png"),
    }
    created = client.post("/v1/videos", files=files)
    assert created.status_code == 200, created.text
    video, _ = wait(client, created.json()["id"])
    assert video["status"] == "SUCCESS"
    _, frames = decode(httpx.get(video["video_url"]).content)
    expected = np.asarray(image.resize((854, 480)), dtype=np.float32)
    assert np.abs(frames[0].astype(np.float32) - expected).mean() < 12


def test_sandbox_markers(client: httpx.Client) -> None:
    outcomes = {}
    for marker in ("fail", "error"):
        created = client.post(
            "/v1/videos",
            json={
                "prompt": f"a cat [[sandbox:{marker}]]",
                "model": "doubao-seedance-1-0-pro",
                "seconds": 2,
                "resolution": "480p",
            },
        )
        outcomes[marker], _ = wait(client, created.json()["id"])
    assert outcomes["fail"]["status"] == "FAILED"
    assert outcomes["fail"]["error"]["code"] == "content_rejected"
    assert outcomes["error"]["status"] == "ERROR"
    for video in outcomes.values():
        assert "video_url" not in video and isinstance(video["completed_at"], int)
        assert video["error"]["message"]


def test_range_head_and_etag(client: httpx.Client) -> None:
    created = client.post(
        "/v1/videos",
        data={
            "prompt": "ranges",
            "seconds": "2",
            "model": "doubao-seedance-1-0-pro",
            "resolution": "480p",
        },
    )
    video, _ = wait(client, created.json()["id"])
    url = video["video_url"]
    whole = httpx.get(url)
    head = httpx.head(url)
    assert head.status_code == 200 and head.content == b""
    assert head.headers["content-length"] == str(len(whole.content))
    assert (
        head.headers["etag"] == whole.headers["etag"] and head.headers["accept-ranges"] == "bytes"
    )
    part = httpx.get(url, headers={"Range": "bytes=100-199"})
    assert part.status_code == 206 and part.content == whole.content[100:200]
    assert part.headers["content-range"] == f"bytes 100-199/{len(whole.content)}"
    tail = httpx.get(url, headers={"Range": "bytes=-50"})
    assert tail.status_code == 206 and tail.content == whole.content[-50:]
    # a fresh signature on every read, both valid
    again = client.get(f"/v1/videos/{video['id']}").json()
    assert (
        httpx.get(again["video_url"], headers={"Range": "bytes=0-9"}).content == whole.content[:10]
    )


def test_models_list(client: httpx.Client) -> None:
    models = client.get("/v1/models").json()
    by_id = {m["id"]: m for m in models["data"]}
    assert set(by_id) == {
        "doubao-seedance-2-0",
        "doubao-seedance-2-0-fast",
        "doubao-seedance-1-5-pro",
        "doubao-seedance-1-0-pro",
    }
    assert by_id["doubao-seedance-1-0-pro"]["seconds"] == {"min": 2, "max": 10, "default": 5}
    assert by_id["doubao-seedance-1-5-pro"]["image_input"] is False
    assert by_id["doubao-seedance-2-0"]["resolutions"] == ["480p", "720p"]
    assert all(m["renderer"] == "preview" for m in models["data"])


def test_cometapi_fields_only_when_due(client: httpx.Client) -> None:
    created = client.post("/v1/videos", json={"prompt": "x", "model": "doubao-seedance-2-0"}).json()
    assert "completed_at" not in created and "video_url" not in created
    video = client.get(f"/v1/videos/{created['id']}").json()
    assert video["status"] in ("SUBMITTED", "IN_PROGRESS", "SUCCESS")
    if video["status"] != "SUCCESS":
        assert video["completed_at"] is None and "video_url" not in video


def test_odd_ranges_and_paths(client: httpx.Client) -> None:
    created = client.post(
        "/v1/videos",
        data={
            "prompt": "odd ranges",
            "seconds": "2",
            "model": "doubao-seedance-1-0-pro",
            "resolution": "480p",
        },
    )
    video, _ = wait(client, created.json()["id"])
    url = video["video_url"]
    whole = httpx.get(url)
    assert f'filename="{video["id"]}.mp4"' in whole.headers["content-disposition"]
    ignored = httpx.get(url, headers={"Range": "bytes=abc"})
    assert ignored.status_code == 200 and ignored.content == whole.content
    outside = httpx.get(url, headers={"Range": "bytes=999999999-"})
    assert outside.status_code == 416
    assert outside.json()["error"]["code"] == "range_not_satisfiable"
    assert outside.headers["content-range"] == f"bytes */{len(whole.content)}"
    slash = client.post("/v1/videos/", data={"prompt": "x", "model": "doubao-seedance-2-0"})
    assert slash.status_code == 404 and slash.json()["error"]["code"] == "not_found"
    assert client.get("/docs").status_code == 404
