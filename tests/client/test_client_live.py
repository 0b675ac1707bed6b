"""The client end to end against a real reelgate server on loopback (``live_server``).

Create and wait with progress, image-to-video, every reachable error mapped,
the CLI making a real MP4, and CometAPI's own documented polling loop.
"""

from __future__ import annotations

import io
import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import requests
import typer
from fakeserver import tiny_png
from typer.testing import CliRunner

from reelgate.client import (
    AsyncClient,
    AuthenticationError,
    Client,
    InvalidParameter,
    MissingParameter,
    NotFoundError,
    TaskNotFound,
    Video,
    _base,
)
from reelgate.client import cli as client_cli

MODEL = "doubao-seedance-2-0-fast"
SMALL: dict[str, Any] = {"seconds": 4, "resolution": "480p", "size": "1:1"}
POLL = 0.05
REFERENCE = (
    Path(__file__).resolve().parents[3] / "shared/reference/cometapi-retrieve-video-task.txt"
)

# CometAPI's polling loop, verbatim from shared/reference/cometapi-retrieve-video-task.txt.
COMETAPI_LOOP = """\
import time
import requests

TASK_ID = "<TASK_ID>"
headers = {"Authorization": "Bearer <COMETAPI_KEY>"}
TERMINAL = {"SUCCESS", "FAILED", "ERROR"}

while True:
    response = requests.get(
        f"https://api.cometapi.com/v1/videos/{TASK_ID}",
        headers=headers,
        timeout=15,
    )
    response.raise_for_status()
    data = response.json()
    if data["status"] in TERMINAL:
        print(data.get("video_url"))
        break
    time.sleep(10)
"""


def decoded_frames(data: bytes) -> int:
    av = pytest.importorskip("av")
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        return sum(1 for _ in container.decode(stream))


def test_create_and_wait_reports_rising_progress(live_client: Client, tmp_path: Path) -> None:
    seen: list[Video] = []
    video = live_client.videos.create_and_wait(
        "a red fox in fresh snow",
        model=MODEL,
        poll_interval=POLL,
        timeout=120,
        on_progress=seen.append,
        **SMALL,
    )
    assert video.succeeded and video.progress == 100 and video.video_url
    assert video.completed_at is not None and video.model == MODEL
    assert seen[0].status == "SUBMITTED" and seen[-1] == video
    progress = [v.progress for v in seen]
    assert progress == sorted(progress)
    path = live_client.videos.download(video, tmp_path / "fox.mp4")
    assert decoded_frames(path.read_bytes()) > 0


def test_image_to_video(live_client: Client, tmp_path: Path) -> None:
    image = tmp_path / "ref.png"
    image.write_bytes(tiny_png(64, 64))
    video = live_client.videos.create_and_wait(
        "the picture comes alive",
        model=MODEL,
        input_reference=image,
        poll_interval=POLL,
        timeout=120,
        **SMALL,
    )
    assert video.succeeded
    assert decoded_frames(live_client.videos.download(video.id, tmp_path).read_bytes()) > 0


async def test_async_client_end_to_end(live_server: Any, tmp_path: Path) -> None:
    async with AsyncClient(live_server.base_url, live_server.api_key, timeout=30) as client:
        created = await client.videos.create("a paper boat on a pond", model=MODEL, **SMALL)
        assert created.normalized_status == "SUBMITTED" and created.id == created.task_id
        video = await client.videos.wait(created.id, poll_interval=POLL, timeout=120)
        path = await client.videos.download(video, tmp_path / "boat.mp4")
    assert decoded_frames(path.read_bytes()) > 0


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"size": "2:1"}, "size"),
        ({"seconds": 99}, "seconds"),
        ({"resolution": "4k"}, "resolution"),
        ({"model": "no-such-model"}, "model"),
    ],
)
def test_invalid_parameters_are_mapped(
    live_client: Client, fields: dict[str, Any], param: str
) -> None:
    arguments: dict[str, Any] = {"model": MODEL, **fields}
    with pytest.raises(InvalidParameter) as caught:
        live_client.videos.create("a fox", **arguments)
    assert caught.value.status == 400 and caught.value.param == param
    assert caught.value.request_id


def test_missing_and_unsupported_inputs_are_mapped(live_client: Client) -> None:
    with pytest.raises(MissingParameter) as caught:
        live_client.videos.create("", model=MODEL)
    assert caught.value.code == "MissingParameter"
    with pytest.raises(InvalidParameter, match="does not support model"):
        live_client.videos.create(
            "a fox", model="doubao-seedance-1-0-pro", input_reference=tiny_png()
        )


def test_unknown_tasks_keys_and_routes_are_mapped(live_client: Client, live_server: Any) -> None:
    with pytest.raises(TaskNotFound) as not_found:
        live_client.videos.retrieve("task_does_not_exist")
    assert not_found.value.status == 400 and not_found.value.request_id
    for key in ("wrong-key", None):
        stranger = Client(live_server.base_url, key or "", max_retries=0)
        with stranger, pytest.raises(AuthenticationError):
            stranger.videos.retrieve("task_does_not_exist")
    route = httpx.get(f"{live_server.base_url}/v1/no-such-route", headers=_auth(live_server))
    error = _base.error_from_response(route)
    assert isinstance(error, NotFoundError) and error.request_id


def test_another_owners_task_does_not_exist(live_client: Client, live_server: Any) -> None:
    key_for = getattr(live_server, "key_for", None)
    if key_for is None:
        pytest.skip("this server fixture makes no second key")
    task = live_client.videos.create("mine", model=MODEL, **SMALL)
    with Client(live_server.base_url, key_for("mallory")) as other, pytest.raises(TaskNotFound):
        other.videos.retrieve(task.id)


def test_cli_end_to_end(live_server: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REELGATE_BASE_URL", live_server.base_url)
    monkeypatch.setenv("REELGATE_API_KEY", live_server.api_key)
    app = typer.Typer()
    client_cli.register(app)
    runner = CliRunner()
    target = tmp_path / "cli.mp4"
    args = [
        "create",
        "a lighthouse at dusk",
        "--model",
        MODEL,
        "--seconds",
        "4",
        "--resolution",
        "480p",
    ]
    result = runner.invoke(app, [*args, "-o", str(target), "--poll-interval", "0.05", "--json"])
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["status"] == "SUCCESS" and data["path"] == str(target)
    assert decoded_frames(target.read_bytes()) > 0
    again = runner.invoke(app, ["download", data["id"], "-o", str(tmp_path / "again.mp4")])
    assert again.exit_code == 0 and (tmp_path / "again.mp4").read_bytes() == target.read_bytes()
    assert runner.invoke(app, ["status", "task_nope"]).exit_code == client_cli.EXIT_NOT_FOUND
    assert runner.invoke(app, ["status", "x", "--api-key", "bad"]).exit_code == client_cli.EXIT_AUTH
    invalid = runner.invoke(app, ["create", "x", "--model", MODEL, "--size", "2:1"])
    assert invalid.exit_code == client_cli.EXIT_INVALID


def test_cometapi_documented_polling_loop(
    live_client: Client,
    live_server: Any,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if REFERENCE.is_file():  # the loop above is CometAPI's, character for character
        assert COMETAPI_LOOP in REFERENCE.read_text()
    task = live_client.videos.create("a kite over the dunes", model=MODEL, **SMALL)
    code = (
        COMETAPI_LOOP.replace("https://api.cometapi.com", live_server.base_url)
        .replace("<TASK_ID>", task.id)
        .replace("<COMETAPI_KEY>", live_server.api_key)
    )
    real_sleep = time.sleep
    monkeypatch.setattr(
        time, "sleep", lambda seconds: real_sleep(min(seconds, 0.1))
    )  # 10 s: too slow
    exec(compile(code, "cometapi_loop", "exec"), {})
    video_url = capsys.readouterr().out.strip()
    assert video_url.startswith("http")
    download = requests.get(video_url, timeout=15)
    assert download.status_code == 200 and download.headers["content-type"].startswith("video/mp4")
    assert decoded_frames(download.content) > 0


def _auth(live_server: Any) -> dict[str, str]:
    return {"Authorization": f"Bearer {live_server.api_key}"}
