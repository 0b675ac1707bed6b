"""The whole path on CPU: HTTP create -> GPU-worker code (tiny pipelines) -> MP4 decoded."""

from __future__ import annotations

import io
import time
from typing import Any

import av
import httpx
import numpy as np
import pytest
from PIL import Image

from tests.gpu.conftest import OOM, SLOW, STEPS_TOTAL_SLOW, Steps
from tests.server import LiveServer

pytestmark = pytest.mark.slow


@pytest.fixture
def client(gpu_server: LiveServer) -> httpx.Client:
    return httpx.Client(base_url=gpu_server.base_url, headers=gpu_server.headers(), timeout=30)


def wait(
    client: httpx.Client, task_id: str, timeout: float = 120
) -> tuple[dict[str, Any], list[int]]:
    """Poll until the task is finished; its last body and the progress values seen."""
    seen: list[int] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        video = client.get(f"/v1/videos/{task_id}").json()
        seen.append(video["progress"])
        if video["status"] in ("SUCCESS", "FAILED", "ERROR"):
            return video, seen
        time.sleep(0.05)
    raise AssertionError(f"task {task_id} did not finish")


def create(client: httpx.Client, image: bytes | None = None, **fields: str) -> str:
    files: dict[str, Any] = {name: (None, value) for name, value in fields.items()}
    if image is not None:
        files["input_reference"] = ("first.png", image, "image/png")
    created = client.post("/v1/videos", files=files)
    assert created.status_code == 200, created.text
    return str(created.json()["id"])


def decode(data: bytes) -> tuple[Any, list[np.ndarray]]:
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.video[0]
        return stream, [f.to_ndarray(format="rgb24") for f in container.decode(stream)]


@pytest.mark.parametrize(
    ("model", "size", "seconds", "shape", "frames"),
    [
        # 854x480 scaled to ~9000 px, multiples of 16; 2 s at 8 fps: 16 -> 4k+1 = 17
        ("wan-2.1-t2v-1.3b", "16:9", "2", (112, 64), 17),
        # multiples of 32 (the 48-channel VAE is 16x, patches of 2); 9:16 kept portrait
        ("wan-2.2-ti2v-5b", "9:16", "1", (64, 128), 9),
        # multiples of 32, 8k+1 frames: 1 s at 8 fps -> 9
        ("ltx-video", "1:1", "1", (96, 96), 9),
    ],
)
def test_create_render_decode(
    client: httpx.Client,
    model: str,
    size: str,
    seconds: str,
    shape: tuple[int, int],
    frames: int,
) -> None:
    task = create(
        client,
        prompt="a cat runs on the beach",
        model=model,
        size=size,
        seconds=seconds,
        resolution="480p",
    )
    video, seen = wait(client, task)
    assert video["status"] == "SUCCESS", video
    assert seen == sorted(seen) and video["progress"] == 100
    stream, decoded = decode(httpx.get(video["video_url"]).content)
    assert stream.codec_context.name == "h264" and stream.codec_context.pix_fmt == "yuv420p"
    assert (stream.width, stream.height) == shape
    assert len(decoded) == frames
    assert float(stream.average_rate) == 8


def test_image_to_video(client: httpx.Client) -> None:
    picture = Image.new("RGB", (320, 180), (30, 120, 220))
    png = io.BytesIO()
    picture.save(png, "PNG")
    task = create(
        client,
        png.getvalue(),
        prompt="a dog",
        model="wan-2.2-ti2v-5b",
        seconds="1",
        resolution="480p",
    )
    video, _ = wait(client, task)
    assert video["status"] == "SUCCESS", video
    stream, decoded = decode(httpx.get(video["video_url"]).content)
    assert (stream.width, stream.height) == (128, 64) and len(decoded) == 9


def test_cancel_stops_the_render(client: httpx.Client, steps: Steps) -> None:
    task = create(client, prompt=f"a slow pan {SLOW}", model="wan-2.1-t2v-1.3b", seconds="1")
    steps.wait_started(task)
    cancelled = client.post(f"/v1/videos/{task}/cancel")
    assert cancelled.status_code == 200, cancelled.text
    video, _ = wait(client, task)
    assert video["status"] == "FAILED" and video["error"]["code"] == "cancelled"
    # The device is free again: the next render on it finishes ...
    after = create(client, prompt="a red cat", model="wan-2.1-t2v-1.3b", seconds="1")
    assert wait(client, after)[0]["status"] == "SUCCESS"
    # ... and the cancelled one stopped at a step, never reaching its last one.
    assert max(steps.seen[task]) < STEPS_TOTAL_SLOW - 1, steps.seen[task]


def test_out_of_memory_ends_the_task_and_frees_the_device(client: httpx.Client) -> None:
    task = create(client, prompt=f"a huge city {OOM}", model="wan-2.1-t2v-1.3b", seconds="1")
    video, _ = wait(client, task)
    assert video["status"] == "ERROR", video
    assert video["error"]["code"] == "gpu_out_of_memory"
    assert "/" not in video["error"]["message"]  # no server paths for clients
    after = create(client, prompt="a blue dog", model="wan-2.1-t2v-1.3b", seconds="1")
    assert wait(client, after)[0]["status"] == "SUCCESS"


def test_models_lists_the_local_models(client: httpx.Client) -> None:
    models = {m["id"]: m for m in client.get("/v1/models").json()["data"]}
    wan = models["wan-2.1-t2v-1.3b"]
    assert wan["renderer"] == "diffusers" and wan["routes"] == []
    assert wan["seconds"]["min"] == 1 and wan["seconds"]["max"] == 4
    assert wan["resolutions"] == ["480p", "720p"] and wan["image_input"] is False
    assert models["wan-2.2-ti2v-5b"]["image_input"] is True
    assert "doubao-seedance-2-0" in models  # the catalog's own ids stay


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"model": "wan-2.1-t2v-1.3b", "seconds": "9"}, "seconds"),
        ({"model": "wan-2.2-ti2v-5b", "seconds": "1", "resolution": "1080p"}, "resolution"),
    ],
)
def test_limits_are_checked_at_create(
    client: httpx.Client, fields: dict[str, str], param: str
) -> None:
    files = {name: (None, value) for name, value in {"prompt": "a cat", **fields}.items()}
    refused = client.post("/v1/videos", files=files)
    assert refused.status_code == 400, refused.text
    assert refused.json()["error"]["param"] == param


def test_text_model_refuses_an_image(client: httpx.Client) -> None:
    files = {
        "prompt": (None, "a cat"),
        "model": (None, "wan-2.1-t2v-1.3b"),
        "input_reference": ("a.png", b"\x89PNG", "image/png"),
    }
    refused = client.post("/v1/videos", files=files)
    assert refused.status_code == 400, refused.text
