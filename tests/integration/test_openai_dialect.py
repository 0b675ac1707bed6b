"""The official ``openai`` SDK, unchanged, against reelgate's OpenAI dialect on loopback."""

from __future__ import annotations

import base64
import io
import time
from collections.abc import Iterator
from pathlib import Path

import av
import httpx
import openai
import pytest
from PIL import Image

from tests.server import LiveServer, start_server

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(180),  # the SDK's poll has no deadline of its own
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),  # the SDK marks videos so
]

SLOW_MODEL = "doubao-seedance-1-0-pro"  # renders with a delay here: in-progress states
POLL_AFTER = 0.25


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """Renders: the preview renderer, two workers, one model slowed down."""
    live = start_server(
        Path(tmp_path_factory.mktemp("openai")),
        poll_after=POLL_AFTER,
        preview_delay=f"{SLOW_MODEL}=2",
    )
    yield live
    live.stop()


@pytest.fixture(scope="module")
def idle(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """No worker: every task stays queued."""
    live = start_server(Path(tmp_path_factory.mktemp("openai-idle")), workers=0)
    yield live
    live.stop()


def sdk(live: LiveServer, owner: str = "alice") -> openai.OpenAI:
    return openai.OpenAI(
        base_url=f"{live.base_url}/openai/v1", api_key=live.key_for(owner), max_retries=0
    )


def png(width: int = 64, height: int = 48) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (200, 40, 90)).save(out, "PNG")
    return out.getvalue()


def test_create_and_poll_completes_then_downloads_video_and_thumbnail(server: LiveServer) -> None:
    client = sdk(server)
    video = client.videos.create_and_poll(
        model="sora-2", prompt="a red fox in the snow", seconds="4", size="1280x720"
    )
    assert video.status == "completed" and video.progress == 100 and video.error is None
    assert video.object == "video" and video.id.startswith("task_")
    assert video.model == "doubao-seedance-2-0-fast"  # sora-2, aliased
    assert (video.seconds, video.size) == ("4", "1280x720")
    assert video.prompt == "a red fox in the snow"
    assert video.completed_at is not None and video.completed_at >= video.created_at

    data = client.videos.download_content(video.id).read()
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.video[0]
        frames = list(container.decode(stream))
    assert (stream.codec_context.width, stream.codec_context.height) == (1280, 720)
    assert len(frames) == 4 * 24

    thumbnail = client.videos.download_content(video.id, variant="thumbnail").read()
    with Image.open(io.BytesIO(thumbnail)) as image:
        assert image.format == "JPEG" and image.size == (1280, 720)

    assert client.videos.retrieve(video.id).status == "completed"
    deleted = client.videos.delete(video.id)
    assert (deleted.id, deleted.object, deleted.deleted) == (video.id, "video.deleted", True)
    with pytest.raises(openai.NotFoundError):
        client.videos.retrieve(video.id)
    with pytest.raises(openai.NotFoundError):
        client.videos.download_content(video.id)


def test_poll_follows_the_poll_after_header(server: LiveServer) -> None:
    client = sdk(server)
    created = client.videos.create(
        model=SLOW_MODEL, prompt="a slow tide", seconds="2", size="854x480"
    )
    assert created.status == "queued" and created.progress == 0
    assert (created.seconds, created.size) == ("2", "854x480")

    raw = client.videos.with_raw_response.retrieve(created.id)
    assert raw.parse().status in ("queued", "in_progress")
    assert raw.headers["openai-poll-after-ms"] == str(int(POLL_AFTER * 1000))

    slept: list[float] = []

    def sleep(seconds: float) -> None:  # the SDK's pause between polls, recorded
        slept.append(seconds)
        time.sleep(seconds)

    client.videos._sleep = sleep  # type: ignore[method-assign]
    video = client.videos.poll(created.id)
    assert video.status == "completed", video
    assert slept and set(slept) == {POLL_AFTER}  # the server's advice, not the SDK's 1 s
    final = client.videos.with_raw_response.retrieve(created.id)
    assert "openai-poll-after-ms" not in final.headers  # nothing left to wait for


def test_list_pages_through_every_video_in_both_orders(idle: LiveServer) -> None:
    client = sdk(idle, "lister")
    ids = [
        client.videos.create(prompt=f"clip {n}", seconds="4", size="720x1280").id for n in range(5)
    ]
    first = client.videos.list(limit=2)
    assert [video.id for video in first.data] == ids[::-1][:2]
    assert first.has_more is True
    newest_first = [video.id for video in client.videos.list(limit=2)]  # every page
    assert newest_first == ids[::-1]
    oldest_first = [video.id for video in client.videos.list(limit=2, order="asc")]
    assert oldest_first == ids
    page = client.videos.list(limit=3, after=ids[2], order="asc")
    assert [video.id for video in page.data] == ids[3:] and page.has_more is False
    assert all(video.status == "queued" for video in page.data)
    assert [video.id for video in client.videos.list(limit=100)] == ids[::-1]
    assert list(sdk(idle, "stranger").videos.list()) == []  # the caller's videos only


def test_create_maps_fields_and_takes_an_image(idle: LiveServer) -> None:
    client = sdk(idle)
    video = client.videos.create(prompt="a lighthouse")  # OpenAI's defaults
    assert (video.model, video.seconds, video.size) == ("doubao-seedance-2-0-fast", "4", "720x1280")
    pro = client.videos.create(model="sora-2-pro", prompt="a harbour", size="1792x1024")
    assert (pro.model, pro.size) == ("doubao-seedance-2-0", "1280x720")  # its 720p
    wide = client.videos.create(
        model="doubao-seedance-1-5-pro", prompt="a plain", seconds="12", size="1792x1024"
    )
    assert (wide.size, wide.seconds) == ("1920x1080", "12")  # 1080p: nearest to 1024 lines

    uploaded = client.videos.create(
        prompt="the fox moves", input_reference=("fox.png", png(), "image/png")
    )
    data_url = "data:image/png;base64," + base64.b64encode(png(32, 32)).decode()
    with httpx.Client(base_url=f"{idle.base_url}/openai/v1", headers=idle.headers()) as raw:
        form = {"prompt": (None, "the fox moves"), "input_reference[image_url]": (None, data_url)}
        linked = raw.post("/videos", files=form)  # OpenAI's object form, as a form sends it
        assert linked.status_code == 200, linked.text
        as_json = raw.post("/videos", json={"prompt": "the fox", "input_reference": data_url})
        assert as_json.status_code == 200, as_json.text
        refused = raw.post(
            "/videos", files={**form, "input_reference[image_url]": (None, "https://a/b.png")}
        )
        assert refused.status_code == 400 and refused.json()["error"]["param"] == "input_reference"
        file_id = raw.post(
            "/videos", files={"prompt": (None, "a"), "input_reference[file_id]": (None, "file_1")}
        )
        assert file_id.status_code == 400 and "file_id" in file_id.json()["error"]["message"]
    for created_id in (uploaded.id, linked.json()["id"], as_json.json()["id"]):
        task = idle.call(idle.components.store.get_task(created_id))
        assert task is not None and task.spec.input_key is not None


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"size": "0x0"}, "size"),
        ({"size": "99999x1"}, "size"),
        ({"size": "4000x100"}, "size"),
        ({"size": "axb"}, "size"),
        ({"seconds": "99"}, "seconds"),
        ({"model": "sora-9"}, "model"),
        ({"model": "doubao-seedance-1-0-pro", "seconds": "12"}, "seconds"),
    ],
)
def test_bad_input_is_a_bad_request_error(
    idle: LiveServer, fields: dict[str, str], param: str
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        sdk(idle).videos.create(prompt="a cat", **fields)  # type: ignore[arg-type]
    error = caught.value
    assert error.status_code == 400 and error.type == "invalid_request_error"
    assert error.param == param and error.code == "invalid_value"
    assert "aliases: sora-2, sora-2-pro" in error.message or param != "model"


def test_missing_prompt_and_unknown_fields(idle: LiveServer) -> None:
    client = sdk(idle)
    with pytest.raises(openai.BadRequestError) as caught:
        client.videos.create(prompt="")
    assert (caught.value.param, caught.value.code) == ("prompt", "missing_required_parameter")
    with pytest.raises(openai.BadRequestError) as caught:
        client.videos.create(prompt="a", extra_body={"style": "noir"})
    assert caught.value.param == "style"


def test_unknown_and_foreign_videos_are_not_found(idle: LiveServer) -> None:
    client = sdk(idle)
    mine = client.videos.create(prompt="mine").id
    stranger = sdk(idle, "mallory")
    for video_id in ("task_nope", mine):
        with pytest.raises(openai.NotFoundError) as caught:
            stranger.videos.retrieve(video_id)
        assert caught.value.status_code == 404 and caught.value.code == "video_not_found"
        with pytest.raises(openai.NotFoundError):
            stranger.videos.delete(video_id)
        with pytest.raises(openai.NotFoundError):
            stranger.videos.download_content(video_id)
    assert client.videos.retrieve(mine).status == "queued"  # untouched


def test_a_bad_key_is_an_authentication_error(idle: LiveServer) -> None:
    client = openai.OpenAI(
        base_url=f"{idle.base_url}/openai/v1", api_key="rg_not-a-key", max_retries=0
    )
    for call in (
        lambda: client.videos.create(prompt="a"),
        lambda: client.videos.retrieve("task_x"),
        lambda: client.videos.list(),
        lambda: client.videos.delete("task_x"),
        lambda: client.videos.download_content("task_x"),
    ):
        with pytest.raises(openai.AuthenticationError) as caught:
            call()
        assert caught.value.status_code == 401 and caught.value.code == "invalid_api_key"


def test_queued_video_content_is_a_conflict_and_delete_cancels_it(idle: LiveServer) -> None:
    client = sdk(idle)
    video = client.videos.create(prompt="never rendered")
    with pytest.raises(openai.ConflictError):
        client.videos.download_content(video.id)
    assert client.videos.delete(video.id).deleted is True
    with pytest.raises(openai.NotFoundError):
        client.videos.retrieve(video.id)


def test_models_list_names_ours_and_the_aliases(idle: LiveServer) -> None:
    ids = {model.id for model in sdk(idle).models.list()}
    assert {"sora-2", "sora-2-pro", "doubao-seedance-2-0", "doubao-seedance-1-0-pro"} <= ids


def test_cometapi_create_takes_pixel_sizes_and_answers_as_before(idle: LiveServer) -> None:
    with httpx.Client(base_url=idle.base_url, headers=idle.headers(), timeout=30) as client:
        for size, resolution, stored in (
            ("1280x720", None, ("16:9", "720p")),
            ("720x1280", "480p", ("9:16", "480p")),  # an explicit resolution wins
            ("1024x1792", None, ("9:16", "720p")),
        ):
            fields = {"prompt": "a fox", "model": "doubao-seedance-2-0", "size": size}
            if resolution:
                fields["resolution"] = resolution
            response = client.post("/v1/videos", files={k: (None, v) for k, v in fields.items()})
            assert response.status_code == 200, response.text
            body = response.json()
            assert set(body) == {
                "id",
                "task_id",
                "object",
                "model",
                "status",
                "progress",
                "created_at",
            }
            task = idle.call(idle.components.store.get_task(body["id"]))
            assert task is not None and (task.spec.size, task.spec.resolution) == stored


def test_a_cancelled_video_is_failed_with_code_cancelled(idle: LiveServer) -> None:
    client = sdk(idle)
    video = client.videos.create(prompt="stopped early")
    tasks = idle.components.tasks
    idle.call(tasks.cancel("alice", video.id))
    raw = client.videos.with_raw_response.retrieve(video.id)
    cancelled = raw.parse()
    assert cancelled.status == "failed" and cancelled.error is not None
    assert cancelled.error.code == "cancelled" and cancelled.error.message
    assert cancelled.completed_at is not None
    assert "openai-poll-after-ms" not in raw.headers
    assert client.videos.poll(video.id).status == "failed"  # returns at once


def test_an_idempotency_key_answers_with_the_same_video(idle: LiveServer) -> None:
    client = sdk(idle)
    key = {"Idempotency-Key": "openai-dialect-key-1"}
    first = client.videos.create(prompt="once", size="1280x720", extra_headers=key)
    again = client.videos.with_raw_response.create(
        prompt="once", size="1280x720", extra_headers=key
    )
    assert again.parse().id == first.id and again.headers["idempotent-replayed"] == "true"
    with pytest.raises(openai.ConflictError) as caught:
        client.videos.create(prompt="another", extra_headers=key)
    assert caught.value.code == "idempotency_key_reused"
