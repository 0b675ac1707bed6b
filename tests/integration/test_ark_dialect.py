"""The Ark dialect against the official BytePlus Ark SDK, on a real reelgate server.

The SDK is pointed at ``http://127.0.0.1:PORT/api/v3`` with a reelgate key; the preview
renderer makes real MP4s, downloaded from the task's ``video_url`` and decoded.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import time
import uuid
from pathlib import Path
from typing import Any

import av
import httpx
import numpy as np
import pytest
from PIL import Image

from reelgate.backends.remote.ark import ArkProvider
from reelgate.config import ProviderConfig
from reelgate.domain.errors import UpstreamGone
from reelgate.ports import UpstreamJob, UpstreamState
from tests.pg import temporary_database
from tests.server import LiveServer, start_server
from tests.webhooks.receiver import start_receiver

sdk = pytest.importorskip("byteplussdkarkruntime")
from byteplussdkarkruntime import Ark  # noqa: E402
from byteplussdkarkruntime._exceptions import (  # noqa: E402
    ArkAuthenticationError,
    ArkBadRequestError,
    ArkNotFoundError,
)

pytestmark = pytest.mark.slow

TEXT_MODEL = "doubao-seedance-1-0-pro"
IMAGE_MODEL = "doubao-seedance-2-0"
DEADLINE = 180.0  # seconds for a short preview render on a busy machine


def ark_for(server: LiveServer, owner: str | None = None) -> Ark:
    """An SDK client of a fresh owner (or ``owner``), pointed at the server."""
    key = server.key_for(owner or f"ark-{uuid.uuid4().hex[:8]}")
    return Ark(base_url=server.base_url + "/api/v3", api_key=key, max_retries=0, timeout=30)


def text(prompt: str) -> dict[str, Any]:
    return {"type": "text", "text": prompt}


def image_item(image: Image.Image) -> dict[str, Any]:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    url = "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
    return {"type": "image_url", "image_url": {"url": url}, "role": "first_frame"}


def wait_for(ark: Ark, task_id: str, status: str, deadline: float = DEADLINE) -> Any:
    """Poll until the task has ``status``; fail on another end, or past the deadline."""
    end = time.monotonic() + deadline
    while True:
        task = ark.content_generation.tasks.get(task_id=task_id)
        if task.status == status:
            return task
        assert task.status in ("queued", "running"), task
        assert time.monotonic() < end, f"{task_id} still {task.status}"
        time.sleep(0.1)


def decode(url: str) -> tuple[Any, list[np.ndarray]]:
    response = httpx.get(url, timeout=30)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "video/mp4"
    with av.open(io.BytesIO(response.content)) as container:
        stream = container.streams.video[0]
        frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(stream)]
        return stream, frames


def test_text_to_video_with_text_commands(live_server: LiveServer) -> None:
    owner = f"ark-{uuid.uuid4().hex[:8]}"
    ark = ark_for(live_server, owner)
    created = ark.content_generation.tasks.create(
        model="seedance-1-0-pro-250528",  # BytePlus's dated name of doubao-seedance-1-0-pro
        content=[text("a lighthouse at dusk --rt 9:16 --dur 2 --rs 480p --wm false")],
        seed=42,
        camera_fixed=True,
    )
    assert created.id.startswith("task_")
    first = ark.content_generation.tasks.get(task_id=created.id)
    assert first.status in ("queued", "running", "succeeded")
    assert (first.model, first.duration, first.ratio, first.resolution) == (
        TEXT_MODEL,
        2,
        "9:16",
        "480p",
    )
    stored = live_server.call(live_server.components.tasks.get(owner, created.id))
    assert stored.spec.prompt == "a lighthouse at dusk"  # the commands are taken out

    done = wait_for(ark, created.id, "succeeded")
    assert done.framespersecond == 24 and done.updated_at >= done.created_at
    assert done.usage.completion_tokens == 480 * 854 * 24 * 2 // 1024
    assert done.error is None
    stream, frames = decode(done.content.video_url)
    assert stream.codec_context.name == "h264"
    assert (stream.width, stream.height) == (480, 854)
    assert len(frames) == 2 * 24


def test_image_to_video_with_a_data_url(live_server: LiveServer) -> None:
    ark = ark_for(live_server)
    image = Image.new("RGB", (360, 640), (30, 120, 220))  # portrait: adaptive is 9:16
    image.paste((250, 200, 20), (100, 200, 260, 440))
    created = ark.content_generation.tasks.create(
        model=IMAGE_MODEL,
        content=[text("the sun rises"), image_item(image)],
        ratio="adaptive",
        duration=4,
        resolution="480p",
    )
    done = wait_for(ark, created.id, "succeeded")
    assert (done.ratio, done.duration, done.resolution) == ("9:16", 4, "480p")
    stream, frames = decode(done.content.video_url)
    assert (stream.width, stream.height, len(frames)) == (480, 854, 4 * 24)
    expected = np.asarray(image.resize((480, 854)), dtype=np.float32)
    assert np.abs(frames[0].astype(np.float32) - expected).mean() < 12  # starts on the image


def test_list_with_filters_and_pages(live_server: LiveServer) -> None:
    ark = ark_for(live_server)
    tasks = ark.content_generation.tasks
    options: dict[str, Any] = {"duration": 2, "resolution": "480p"}
    ids = [tasks.create(model=TEXT_MODEL, content=[text(f"p{i}")], **options).id for i in range(3)]
    failing = text("a cat [[sandbox:fail]]")
    other = tasks.create(model="doubao-seedance-1-5-pro", content=[failing], duration=4).id

    listed = tasks.list(page_num=1, page_size=10, model=TEXT_MODEL)
    assert listed.total == 3
    assert [item.id for item in listed.items] == ids[::-1]  # newest first
    second = tasks.list(page_num=2, page_size=2, model="seedance-1-0-pro-250528")
    assert (second.total, [item.id for item in second.items]) == (3, [ids[0]])
    chosen = tasks.list(task_ids=[ids[1], other, "task_unknown"])
    assert [item.id for item in chosen.items] == [other, ids[1]] and chosen.total == 2
    assert tasks.list(page_size=100).total == 4
    assert ark_for(live_server).content_generation.tasks.list().total == 0  # another owner

    for task_id in ids:
        wait_for(ark, task_id, "succeeded")
    wait_for(ark, other, "failed")
    done = tasks.list(status="succeeded", page_size=2)
    assert (done.total, [item.id for item in done.items]) == (3, ids[:0:-1])
    assert done.items[0].content.video_url.startswith(live_server.base_url)
    failed = tasks.list(status="failed")
    assert [item.id for item in failed.items] == [other]
    assert failed.items[0].error.code == "content_rejected"
    assert tasks.list(status="queued").total == 0
    assert tasks.list(status="cancelled").total == 0
    assert tasks.list(model="doubao-unknown").total == 0
    with pytest.raises(ArkBadRequestError) as caught:
        tasks.list(page_size=501)
    assert (caught.value.code, caught.value.param) == ("InvalidParameter", "page_size")
    with pytest.raises(ArkBadRequestError):
        tasks.list(status="done")


def test_delete_cancels_an_unfinished_task_and_deletes_a_finished_one(
    live_server: LiveServer,
) -> None:
    ark = ark_for(live_server)
    tasks = ark.content_generation.tasks
    finished = tasks.create(model=TEXT_MODEL, content=[text("short")], duration=2).id
    long = tasks.create(model=TEXT_MODEL, content=[text("long")], duration=10).id
    tasks.delete(long)  # queued or rendering: cancelled, and kept
    cancelled = wait_for(ark, long, "cancelled", deadline=30)
    assert cancelled.content is None and cancelled.error is None
    assert [item.id for item in tasks.list(status="cancelled").items] == [long]

    url = wait_for(ark, finished, "succeeded").content.video_url
    tasks.delete(finished)  # finished: deleted, with its files
    with pytest.raises(ArkNotFoundError) as caught:
        tasks.get(task_id=finished)
    assert caught.value.code == "ResourceNotFound"
    assert httpx.get(url).status_code == 404
    with pytest.raises(ArkNotFoundError):
        tasks.delete(finished)
    tasks.delete(long)  # a cancelled task has finished: deleted too
    assert tasks.list().total == 0


def test_errors_arrive_as_the_sdk_exceptions(live_server: LiveServer) -> None:
    ark = ark_for(live_server)
    tasks = ark.content_generation.tasks
    with pytest.raises(ArkNotFoundError) as unknown:
        tasks.get(task_id="task_does_not_exist")
    assert unknown.value.code == "ResourceNotFound"
    assert "Request id: req_" in unknown.value.message
    mine = tasks.create(model=TEXT_MODEL, content=[text("mine")], duration=2).id
    with pytest.raises(ArkNotFoundError):  # another owner's task is unknown to a stranger
        ark_for(live_server).content_generation.tasks.get(task_id=mine)

    cases: list[tuple[dict[str, Any], str]] = [
        ({"ratio": "2:1"}, "ratio"),
        ({"duration": 99}, "duration"),
        ({"resolution": "4k"}, "resolution"),
        ({"content": [text("a --ratio 1:1")], "ratio": "16:9"}, "ratio"),
        ({"content": [text("a"), text("b")]}, "content.text"),
        ({"content": [text("a"), image_item(Image.new("RGB", (64, 64)))]}, "content.image_url"),
        (
            {
                "content": [
                    text("a"),
                    {"type": "image_url", "image_url": {"url": "https://x/a.png"}},
                ]
            },
            "content.image_url",
        ),
        ({"return_last_frame": True}, "return_last_frame"),
        ({"seed": "7"}, "seed"),
    ]
    for extra, param in cases:
        options: dict[str, Any] = {"model": TEXT_MODEL, "content": [text("a lighthouse")]}
        options.update(extra)
        with pytest.raises(ArkBadRequestError) as bad:
            tasks.create(**options)
        assert (bad.value.code, bad.value.param) == ("InvalidParameter", param), extra
    with pytest.raises(ArkBadRequestError) as missing:
        tasks.create(model=TEXT_MODEL, content=[text("--dur 5")])
    assert (missing.value.code, missing.value.param) == ("MissingParameter", "content.text")
    with pytest.raises(ArkNotFoundError) as model:
        tasks.create(model="seedance-9-9-250101", content=[text("a")])
    assert model.value.code == "InvalidEndpointOrModel.NotFound"
    stranger = Ark(base_url=live_server.base_url + "/api/v3", api_key="sk-wrong", max_retries=0)
    with pytest.raises(ArkAuthenticationError) as auth:
        stranger.content_generation.tasks.get(task_id=mine)
    assert auth.value.code == "AuthenticationError"


def test_raw_errors_and_bodies(live_server: LiveServer) -> None:
    """What the SDK cannot send: a body that does not parse, a field twice, no key."""
    url = live_server.base_url + "/api/v3/contents/generations/tasks"
    headers = {**live_server.headers(), "Content-Type": "application/json"}
    for body, code in [
        (b"{", "InvalidParameter"),
        (b"[]", "InvalidParameter"),
        (b'{"model": "a", "model": "b"}', "InvalidParameter"),
        (b'{"model": "doubao-seedance-1-0-pro", "content": [], "\\ud800": 1}', "InvalidParameter"),
        (b'{"content": [{"type": "text", "text": "x"}]}', "MissingParameter"),
    ]:
        response = httpx.post(url, content=body, headers=headers)
        assert response.status_code == 400, body
        error = response.json()["error"]
        assert (error["code"], error["type"]) == (code, "BadRequest"), body
        assert set(error) == {"code", "message", "param", "type"}
    response = httpx.get(url + "/task_x")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "AuthenticationError"
    response = httpx.get(url, params={"filter.unknown": "1"}, headers=headers)
    assert response.status_code == 400 and response.json()["error"]["param"] == "filter.unknown"


@pytest.mark.postgres
def test_pages_past_the_store_page_on_postgresql(tmp_path: Path) -> None:
    """120 queued tasks (no worker) on PostgreSQL: pages by number across keyset pages."""
    with temporary_database() as url:
        server = start_server(tmp_path, database_url=url, workers=0)
        try:
            ark = ark_for(server)
            tasks = ark.content_generation.tasks
            made = [
                tasks.create(
                    model=TEXT_MODEL if i % 12 else "doubao-seedance-1-5-pro",
                    content=[text(f"p{i}")],
                    duration=4,
                ).id
                for i in range(120)
            ]
            newest = made[::-1]
            everything = tasks.list(page_num=3, page_size=50)
            assert everything.total == 120
            assert [item.id for item in everything.items] == newest[100:]
            assert all(item.status == "queued" for item in everything.items)
            of_model = tasks.list(page_num=2, page_size=100, model=TEXT_MODEL)
            expected = [task_id for i, task_id in enumerate(made) if i % 12][::-1]
            assert of_model.total == 110 and [i.id for i in of_model.items] == expected[100:]
            assert tasks.list(page_num=9, page_size=100).items == []

            tasks.delete(made[5])  # queued: cancelled at once, and kept
            assert tasks.get(task_id=made[5]).status == "cancelled"
            assert [i.id for i in tasks.list(status="cancelled").items] == [made[5]]
            assert tasks.list(status="queued", page_size=1).total == 119
            tasks.delete(made[5])  # finished (cancelled): deleted
            with pytest.raises(ArkNotFoundError):
                tasks.get(task_id=made[5])
            assert tasks.list().total == 119
        finally:
            server.stop()


def test_callback_url_and_idempotency_key(tmp_path: Path) -> None:
    """Ark's ``callback_url`` is a per-task webhook (reelgate's payload, signed)."""
    receiver, fake = start_receiver()
    server = start_server(
        tmp_path,
        renderer="instant",
        webhook_allowed_networks="127.0.0.1/32",
        webhook_poll_interval=0.05,
    )
    try:
        ark = ark_for(server)
        tasks = ark.content_generation.tasks
        hook = fake.url("/ark-hook")
        created = tasks.create(
            model=TEXT_MODEL,
            content=[text("a fox")],
            duration=2,
            callback_url=hook,
            extra_headers={"Idempotency-Key": "ark-key-1"},
        )
        again = tasks.create(
            model=TEXT_MODEL,
            content=[text("a fox")],
            duration=2,
            callback_url=hook,
            extra_headers={"Idempotency-Key": "ark-key-1"},
        )
        assert again.id == created.id
        wait_for(ark, created.id, "succeeded", deadline=60)
        receiver.wait_for(
            lambda got: any(json.loads(r.body)["status"] == "SUCCESS" for r in got), timeout=60
        )
        final = [json.loads(r.body) for r in receiver.received][-1]
        assert (
            final["task_id"] == created.id and "webhook-signature" in receiver.received[-1].headers
        )
        with pytest.raises(ArkBadRequestError) as refused:
            tasks.create(model=TEXT_MODEL, content=[text("x")], callback_url="http://10.0.0.1/h")
        assert refused.value.param == "callback_url"
    finally:
        server.stop()
        fake.stop()


async def test_reelgates_own_ark_adapter_runs_tasks_here(
    live_server: LiveServer, tmp_path: Path
) -> None:
    """ArkProvider (what reelgate sends to Ark) against this dialect: submit, poll, download."""
    key = live_server.key_for(f"ark-{uuid.uuid4().hex[:8]}")
    settings = ProviderConfig(
        kind="ark", base_url=live_server.base_url + "/api/v3", api_key_env="UNUSED"
    )
    provider = ArkProvider("back", settings, key)
    try:
        job = UpstreamJob(
            task_id="task_front",
            model="seedance-1-0-pro-250528",
            prompt="a red fox",
            seconds=2,
            size="1:1",
            resolution="480p",
        )
        upstream_id = await provider.submit(job)
        end = time.monotonic() + DEADLINE
        state = await provider.get(upstream_id)
        while state.state is not UpstreamState.SUCCEEDED:
            assert state.state in (UpstreamState.QUEUED, UpstreamState.RUNNING), state
            assert time.monotonic() < end
            await asyncio.sleep(0.1)
            state = await provider.get(upstream_id)
        assert state.usage_tokens == 480 * 480 * 24 * 2 // 1024
        dest = tmp_path / "fox.mp4"
        await provider.download(upstream_id, state, dest, 50 * 1024 * 1024)
        with av.open(str(dest)) as container:
            stream = container.streams.video[0]
            assert (stream.width, stream.height) == (480, 480)
            assert sum(1 for _ in container.decode(stream)) == 48
        found = await provider.find_lost(job, since=time.time() - 600, known=set())
        assert found == upstream_id  # Ark's list, as the adapter reads it
        await provider.cancel(upstream_id)  # a finished task: deleted
        with pytest.raises(UpstreamGone):
            await provider.get(upstream_id)
    finally:
        await provider.close()
