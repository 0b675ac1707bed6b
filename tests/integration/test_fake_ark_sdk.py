"""The fake Ark server against the official BytePlus Ark SDK over loopback HTTP.

If the SDK can create, read, list and delete tasks on the fake, and its errors arrive
as the SDK's own exception classes with Ark's codes, the fake speaks Ark's wire format.
"""

from __future__ import annotations

import base64
import io
import time
from collections.abc import Callable, Iterator
from typing import Any

import av
import httpx
import pytest
from PIL import Image

from reelgate.backends.remote.fakes.ark import FakeArkSettings, fake_ark_app
from tests.upstreams import RunningFake, start_fake

sdk = pytest.importorskip("byteplussdkarkruntime")
from byteplussdkarkruntime import Ark  # noqa: E402
from byteplussdkarkruntime._exceptions import (  # noqa: E402
    ArkAuthenticationError,
    ArkBadRequestError,
    ArkInternalServerError,
    ArkNotFoundError,
    ArkRateLimitError,
)

KEY = "sdk-test-key"
MODEL = "seedance-1-0-pro-250528"
Start = Callable[..., RunningFake]


@pytest.fixture
def start() -> Iterator[Start]:
    """Start fakes with the given settings (tiny run times by default); stop them after."""
    running: list[RunningFake] = []

    def _start(**settings: Any) -> RunningFake:
        options: dict[str, Any] = {"api_keys": (KEY,), "min_seconds": 0.2, "max_seconds": 0.5}
        options.update(settings)
        fake = start_fake(fake_ark_app(FakeArkSettings(**options)))
        running.append(fake)
        return fake

    yield _start
    for fake in running:
        fake.stop()


@pytest.fixture(scope="module")
def shared() -> Iterator[RunningFake]:
    settings = FakeArkSettings(api_keys=(KEY,), min_seconds=0.2, max_seconds=0.5)
    with start_fake(fake_ark_app(settings)) as running:
        yield running


@pytest.fixture
def fake(shared: RunningFake) -> RunningFake:
    """The module's fake, reset: no tasks, faults or counts of an earlier test."""
    shared.reset()
    return shared


def client(fake: RunningFake, key: str = KEY, retries: int = 0) -> Ark:
    return Ark(base_url=fake.url("/api/v3"), api_key=key, max_retries=retries, timeout=10)


def text(prompt: str) -> dict[str, Any]:
    return {"type": "text", "text": prompt}


def png_data_url() -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (32, 18), (200, 40, 40)).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def wait_for(ark: Ark, task_id: str, status: str, deadline: float = 10.0) -> Any:
    """Poll until the task has ``status``; fail past the deadline."""
    end = time.monotonic() + deadline
    while True:
        task = ark.content_generation.tasks.get(task_id=task_id)
        if task.status == status:
            return task
        assert task.status in ("queued", "running"), task
        assert time.monotonic() < end, f"{task_id} still {task.status}"
        time.sleep(0.05)


def test_text_to_video_end_to_end(start: Start) -> None:
    fake = start(queue_fraction=0.5)
    ark = client(fake)
    created = ark.content_generation.tasks.create(
        model=MODEL,
        content=[text("a lighthouse at dusk")],
        duration=3,
        ratio="9:16",
        resolution="480p",
        seed=42,
        watermark=False,
    )
    assert created.id.startswith("cgt-")
    first = ark.content_generation.tasks.get(task_id=created.id)
    assert first.status == "queued"
    assert (first.model, first.duration, first.ratio, first.resolution, first.seed) == (
        MODEL,
        3,
        "9:16",
        "480p",
        42,
    )
    assert first.content is None and first.usage is None
    done = wait_for(ark, created.id, "succeeded")
    assert done.usage.completion_tokens > 0
    assert done.framespersecond == 24
    assert done.updated_at >= done.created_at
    url = done.content.video_url
    assert "X-Tos-Signature=" in url and "%3D" in url  # the signature is percent-encoded

    response = httpx.get(url, timeout=10)
    assert response.status_code == 200
    assert response.headers["content-type"] == "video/mp4"
    assert int(response.headers["content-length"]) == len(response.content)
    with av.open(io.BytesIO(response.content)) as container:
        stream = container.streams.video[0]
        assert (stream.codec_context.name, stream.width, stream.height) == ("h264", 36, 64)
        frames = len(list(container.decode(stream)))
    assert frames == 3 * 24
    assert fake.stats()["prompts"] == {"a lighthouse at dusk": 1}


def test_image_to_video_with_a_data_url(fake: RunningFake) -> None:
    ark = client(fake)
    image = {"type": "image_url", "image_url": {"url": png_data_url()}, "role": "first_frame"}
    created = ark.content_generation.tasks.create(
        model=MODEL, content=[text("the cat walks"), image], ratio="adaptive"
    )
    done = wait_for(ark, created.id, "succeeded")
    assert (done.duration, done.ratio, done.resolution) == (5, "16:9", "720p")  # the defaults
    remote = {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}
    assert ark.content_generation.tasks.create(model=MODEL, content=[text("x"), remote]).id


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"ratio": "2:1"}, "ratio"),
        ({"resolution": "4k"}, "resolution"),
        ({"duration": 99}, "duration"),
        ({"content": [text("a"), text("b")]}, "content"),
        ({"content": []}, "content"),
        ({"content": [text("a"), {"type": "image_url", "image_url": {"url": "data:x"}}]}, None),
        ({"model": ""}, "model"),
    ],
)
def test_invalid_bodies_are_refused_as_ark_does(
    fake: RunningFake, extra: dict[str, Any], param: str | None
) -> None:
    ark = client(fake)
    options: dict[str, Any] = {"model": MODEL, "content": [text("a lighthouse")]}
    options.update(extra)
    with pytest.raises(ArkBadRequestError) as caught:
        ark.content_generation.tasks.create(**options)
    assert caught.value.code == "InvalidParameter"
    if param is not None:
        assert caught.value.param == param
    assert "Request id:" in caught.value.body["message"]


def test_sdk_errors_for_refusals_keys_and_faults(start: Start) -> None:
    fake = start(models=(MODEL,))
    ark = client(fake)
    with pytest.raises(ArkBadRequestError) as refused:
        ark.content_generation.tasks.create(model=MODEL, content=[text("x [[fake:refuse]]")])
    assert refused.value.code == "SensitiveContentDetected"
    with pytest.raises(ArkNotFoundError) as closed:
        ark.content_generation.tasks.create(model="doubao-other", content=[text("x")])
    assert closed.value.code == "ModelNotOpen"
    with pytest.raises(ArkAuthenticationError) as auth:
        client(fake, key="wrong").content_generation.tasks.get(task_id="cgt-1")
    assert auth.value.code == "AuthenticationError"
    with pytest.raises(ArkNotFoundError):
        ark.content_generation.tasks.get(task_id="cgt-unknown")

    fake.faults(create_429=1, retry_after=0)
    with pytest.raises(ArkRateLimitError) as limited:
        ark.content_generation.tasks.create(model=MODEL, content=[text("x")])
    assert limited.value.code == "RateLimitExceeded"
    assert limited.value.response.headers["retry-after"] == "0"
    fake.faults(create_500=1)
    with pytest.raises(ArkInternalServerError):
        ark.content_generation.tasks.create(model=MODEL, content=[text("x")])
    fake.faults(create_503=1)  # the SDK retries a 503 and then succeeds
    assert (
        client(fake, retries=1).content_generation.tasks.create(model=MODEL, content=[text("y")]).id
    )
    assert fake.stats()["prompts"] == {"y": 1}


def test_failed_and_expired_tasks(fake: RunningFake) -> None:
    ark = client(fake)
    failed = ark.content_generation.tasks.create(model=MODEL, content=[text("[[fake:fail]]")])
    expired = ark.content_generation.tasks.create(model=MODEL, content=[text("[[fake:expire]]")])
    task = wait_for(ark, failed.id, "failed")
    assert task.error.code == "OutputVideoSensitiveContentDetected"
    assert task.content is None
    assert wait_for(ark, expired.id, "expired").error is None


def test_list_filters_and_pages(fake: RunningFake) -> None:
    ark = client(fake)
    tasks = ark.content_generation.tasks
    ids = [tasks.create(model=MODEL, content=[text(f"p{i}")]).id for i in range(3)]
    other = tasks.create(model="doubao-seedance-2-0", content=[text("q")]).id
    listed = tasks.list(page_num=1, page_size=10, model=MODEL)
    assert listed.total == 3
    assert [item.id for item in listed.items] == ids[::-1]  # newest first
    second = tasks.list(page_num=2, page_size=2, model=MODEL)
    assert (second.total, [item.id for item in second.items]) == (3, [ids[0]])
    chosen = tasks.list(task_ids=[ids[1], other])
    assert {item.id for item in chosen.items} == {ids[1], other}
    for task_id in (*ids, other):
        wait_for(ark, task_id, "succeeded")
    done = tasks.list(page_size=10, status="succeeded", model="doubao-seedance-2-0")
    assert [item.id for item in done.items] == [other]
    assert tasks.list(status="queued").total == 0
    with pytest.raises(ArkBadRequestError):
        tasks.list(page_size=501)


def test_delete_cancels_queued_and_forgets_finished(start: Start) -> None:
    fake = start(min_seconds=30, max_seconds=30)
    ark = client(fake)
    tasks = ark.content_generation.tasks
    queued = tasks.create(model=MODEL, content=[text("slow")]).id
    tasks.delete(queued)
    assert tasks.get(task_id=queued).status == "cancelled"
    with pytest.raises(ArkBadRequestError):
        tasks.delete(queued)  # a cancelled task cannot be deleted
    fake.advance(31)
    running = tasks.create(model=MODEL, content=[text("now")]).id
    fake.advance(10)  # 1/3 into its run: running
    assert tasks.get(task_id=running).status == "running"
    with pytest.raises(ArkBadRequestError):
        tasks.delete(running)
    fake.advance(30)
    assert tasks.get(task_id=running).status == "succeeded"
    tasks.delete(running)
    with pytest.raises(ArkNotFoundError):
        tasks.get(task_id=running)
    with pytest.raises(ArkNotFoundError):
        tasks.delete(running)


def test_video_urls_are_checked_like_presigned_urls(start: Start) -> None:
    fake = start(url_ttl=3600)
    ark = client(fake)
    created = ark.content_generation.tasks.create(model=MODEL, content=[text("v")], duration=2)
    url = wait_for(ark, created.id, "succeeded").content.video_url
    assert httpx.get(url).status_code == 200
    decoded = url.replace("%2B", "+").replace("%2F", "/").replace("%3D", "=")
    assert httpx.get(httpx.URL(decoded)).status_code == 403  # re-encoded: refused
    assert httpx.get(url.replace("Expires=", "Expires=1")).status_code == 403
    fake.advance(3601)
    expired = httpx.get(url)
    assert expired.status_code == 403 and b"expired" in expired.content
    assert fake.stats()["downloads"] == 1
