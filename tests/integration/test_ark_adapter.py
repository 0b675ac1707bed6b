"""ArkProvider against the fake Ark server on loopback: states, faults, downloads, recovery."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import av
import httpx
import pytest

from reelgate.backends.remote import open_provider
from reelgate.backends.remote.ark import ArkProvider
from reelgate.backends.remote.fakes.ark import FakeArkSettings, fake_ark_app
from reelgate.config import ProviderConfig
from reelgate.domain.errors import (
    UpstreamBusy,
    UpstreamError,
    UpstreamGone,
    UpstreamRefused,
    UpstreamUncertain,
)
from reelgate.ports import UpstreamJob, UpstreamState, UpstreamTask
from tests.upstreams import RunningFake, free_port, start_fake

KEY = "ark-secret-key-0123456789"
MODEL = "seedance-1-0-pro-250528"
MB = 1024 * 1024
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 24


def job(prompt: str = "a lighthouse at dusk", **fields: Any) -> UpstreamJob:
    values: dict[str, Any] = {
        "task_id": "task_1",
        "model": MODEL,
        "prompt": prompt,
        "seconds": 2,
        "size": "16:9",
        "resolution": "720p",
    }
    values.update(fields)
    return UpstreamJob(**values)


def config(base_url: str, **fields: Any) -> ProviderConfig:
    return ProviderConfig(kind="ark", base_url=base_url, api_key_env="ARK_KEY", **fields)


@pytest.fixture
def fakes() -> Iterator[Callable[..., RunningFake]]:
    running: list[RunningFake] = []

    def _start(**settings: Any) -> RunningFake:
        options: dict[str, Any] = {"api_keys": (KEY,), "min_seconds": 0.2, "max_seconds": 0.4}
        options.update(settings)
        running.append(start_fake(fake_ark_app(FakeArkSettings(**options))))
        return running[-1]

    yield _start
    for fake in running:
        fake.stop()


@pytest.fixture(scope="module")
def shared() -> Iterator[RunningFake]:
    settings = FakeArkSettings(api_keys=(KEY,), min_seconds=0.2, max_seconds=0.4)
    with start_fake(fake_ark_app(settings)) as running:
        yield running


@pytest.fixture
def fake(shared: RunningFake) -> RunningFake:
    """The module's fake, with no tasks, faults or counts left by an earlier test."""
    shared.reset()
    return shared


@pytest.fixture
async def ark(fake: RunningFake) -> AsyncIterator[ArkProvider]:
    provider = ArkProvider("ark-test", config(fake.url("/api/v3")), KEY)
    yield provider
    await provider.close()


async def wait_state(
    provider: ArkProvider, upstream_id: str, *, deadline: float = 10.0
) -> tuple[UpstreamTask, list[UpstreamState]]:
    """Poll until the task is terminal; return it and every state seen on the way."""
    end = time.monotonic() + deadline
    seen: list[UpstreamState] = []
    while True:
        task = await provider.get(upstream_id)
        if not seen or seen[-1] is not task.state:
            seen.append(task.state)
        if task.state not in (UpstreamState.QUEUED, UpstreamState.RUNNING):
            return task, seen
        assert time.monotonic() < end, f"{upstream_id} is still {task.state}"
        await asyncio.sleep(0.05)


def frames_of(path: Path) -> tuple[int, int, int, float]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = sum(1 for _ in container.decode(stream))
        return frames, stream.width, stream.height, float(container.duration or 0) / 1e6


async def test_submit_poll_download(fakes: Callable[..., RunningFake], tmp_path: Path) -> None:
    fake = fakes(queue_fraction=0.5)
    provider = open_provider("ark-test", config(fake.url("/api/v3")), KEY)
    assert isinstance(provider, ArkProvider) and provider.kind == "ark"
    try:
        upstream_id = await provider.submit(job(seconds=3, size="9:16"))
        task, seen = await wait_state(provider, upstream_id)
        assert seen[0] is UpstreamState.QUEUED and seen[-1] is UpstreamState.SUCCEEDED
        assert task.progress == 100 and task.usage_tokens and task.usage_tokens > 0
        assert task.video_url is not None and "%3D" in task.video_url
        assert task.video_expires_at is not None
        assert time.time() + 24 * 3600 - 5 < task.video_expires_at < time.time() + 24 * 3600 + 5
        dest = tmp_path / "video.mp4"
        await provider.download(upstream_id, task, dest, 10 * MB)
        assert frames_of(dest)[:3] == (72, 36, 64)
        assert frames_of(dest)[3] == pytest.approx(3.0, abs=0.1)
    finally:
        await provider.close()
    stats = fake.stats()
    assert (stats["downloads"], stats["downloads_refused"]) == (1, 0)  # URL used as returned
    assert stats["prompts"] == {"a lighthouse at dusk": 1}
    (headers,) = stats["download_headers"]
    assert "authorization" not in headers
    assert all(KEY not in value for value in headers.values())


async def test_image_to_video_sends_a_data_url(ark: ArkProvider, fake: RunningFake) -> None:
    upstream_id = await ark.submit(job(image=PNG, image_type="image/png"))
    task, _ = await wait_state(ark, upstream_id)
    assert task.state is UpstreamState.SUCCEEDED
    body = ark.request_body(job(image=PNG))
    image = body["content"][1]
    assert image["role"] == "first_frame"
    assert image["image_url"]["url"].startswith("data:image/png;base64,iVBORw0KGgo")
    signed = ark.request_body(job(image=PNG, image_url="https://files.example/i.png?sig=1"))
    assert signed["content"][1]["image_url"]["url"] == "https://files.example/i.png?sig=1"
    assert (body["duration"], body["ratio"], body["resolution"]) == (2, "16:9", "720p")
    assert "watermark" not in body and "callback_url" not in body


async def test_watermark_and_callback_are_sent(fake: RunningFake) -> None:
    provider = ArkProvider("a", config(fake.url("/api/v3"), watermark=False), KEY)
    body = provider.request_body(job(callback_url="https://gw.example/hooks/ark"))
    assert body["watermark"] is False and body["callback_url"] == "https://gw.example/hooks/ark"
    assert await provider.submit(job(callback_url="https://gw.example/hooks/ark"))
    await provider.close()


@pytest.mark.parametrize(
    ("prompt", "fields", "code"),
    [
        ("please [[fake:refuse]] this", {}, "content_rejected"),
        ("too long", {"seconds": 99}, "invalid_parameter"),
        ("odd ratio", {"size": "2:1"}, "invalid_parameter"),
        ("closed model", {"model": "doubao-not-open"}, "upstream_refused"),
    ],
)
async def test_refusals_have_stable_codes(
    fakes: Callable[..., RunningFake], prompt: str, fields: dict[str, Any], code: str
) -> None:
    fake = fakes(models=(MODEL,))
    provider = ArkProvider("ark-test", config(fake.url("/api/v3")), KEY)
    with pytest.raises(UpstreamRefused) as caught:
        await provider.submit(job(prompt, **fields))
    await provider.close()
    assert caught.value.code == code
    assert caught.value.provider == "ark-test"
    assert "http" not in caught.value.message and KEY not in caught.value.message
    assert fake.stats()["creates"] == 0


async def test_a_bad_key_is_refused(fake: RunningFake) -> None:
    provider = ArkProvider("ark-test", config(fake.url("/api/v3")), "not-the-key")
    with pytest.raises(UpstreamRefused) as caught:
        await provider.submit(job())
    await provider.close()
    assert caught.value.code == "upstream_refused"
    assert "not-the-key" not in caught.value.message


async def test_busy_answers(ark: ArkProvider, fake: RunningFake) -> None:
    fake.faults(create_429=1, retry_after=3)
    with pytest.raises(UpstreamBusy) as limited:
        await ark.submit(job())
    assert limited.value.retry_after == 3
    for fault in ("create_500", "create_503"):
        fake.faults(**{fault: 1})
        with pytest.raises(UpstreamBusy):
            await ark.submit(job())
    assert fake.stats()["creates"] == 0
    upstream_id = await ark.submit(job())
    for fault in ("get_429", "get_500", "get_malformed"):
        fake.faults(**{fault: 1})
        with pytest.raises(UpstreamBusy):
            await ark.get(upstream_id)
    fake.faults(outage=True)
    with pytest.raises(UpstreamBusy):
        await ark.get(upstream_id)
    with pytest.raises(UpstreamBusy):
        await ark.submit(job())
    fake.faults(outage=False)
    assert (await ark.get(upstream_id)).state in tuple(UpstreamState)


async def test_connect_refused_is_busy() -> None:
    provider = ArkProvider("ark-test", config(f"http://127.0.0.1:{free_port()}/api/v3"), KEY)
    with pytest.raises(UpstreamBusy):
        await provider.submit(job())
    with pytest.raises(UpstreamBusy):
        await provider.get("cgt-1")
    await provider.close()


async def test_hung_submit_is_uncertain_and_found_again(
    fake: RunningFake,
) -> None:
    provider = ArkProvider("ark-test", config(fake.url("/api/v3"), timeout=0.3), KEY)
    since = time.time()
    fake.faults(create_hang=1, hang_seconds=5)
    with pytest.raises(UpstreamUncertain):
        await provider.submit(job("lost in transit"))
    assert fake.stats()["prompts"] == {"lost in transit": 1}  # the fake has it
    lost = await provider.find_lost(job("lost in transit"), since=since, known=())
    assert lost is not None and lost.startswith("cgt-")
    assert (await provider.get(lost)).state in tuple(UpstreamState)
    assert await provider.find_lost(job(), since=since, known={lost}) is None
    other = await provider.submit(job("another"))  # now two candidates: ambiguous
    with pytest.raises(UpstreamBusy):  # ask again once the other one is recorded
        await provider.find_lost(job(), since=since, known=())
    assert await provider.find_lost(job(), since=since, known={other}) == lost
    assert await provider.find_lost(job(seconds=5), since=since, known={other}) is None
    assert await provider.find_lost(job(model="other"), since=since, known=()) is None
    fake.advance(60)
    assert await provider.find_lost(job(), since=time.time() + 60, known=()) is None
    fake.faults(list_500=1)
    with pytest.raises(UpstreamBusy):
        await provider.find_lost(job(), since=since, known=())
    await provider.close()


async def test_find_lost_reads_further_pages(ark: ArkProvider) -> None:
    since = time.time()
    lost = await ark.submit(job("first"))
    known = {await ark.submit(job(f"known {i}")) for i in range(100)}
    assert await ark.find_lost(job(), since=since, known=known) == lost  # on page 2


async def test_failed_and_expired(ark: ArkProvider) -> None:
    failed, _ = await wait_state(ark, await ark.submit(job("[[fake:fail]]")))
    assert failed.state is UpstreamState.FAILED
    assert failed.error_code == "content_rejected"
    assert failed.error_message and "sensitive" in failed.error_message
    expired, _ = await wait_state(ark, await ark.submit(job("[[fake:expire]]")))
    assert expired.state is UpstreamState.EXPIRED and expired.video_url is None


async def test_unknown_task_is_gone(ark: ArkProvider) -> None:
    with pytest.raises(UpstreamGone) as caught:
        await ark.get("cgt-20250101000000-nope0")
    assert caught.value.code == "upstream_task_missing"


async def finished(ark: ArkProvider) -> tuple[str, UpstreamTask]:
    upstream_id = await ark.submit(job())
    task, _ = await wait_state(ark, upstream_id)
    assert task.state is UpstreamState.SUCCEEDED
    return upstream_id, task


async def test_download_faults(ark: ArkProvider, fake: RunningFake, tmp_path: Path) -> None:
    upstream_id, task = await finished(ark)
    dest = tmp_path / "v.mp4"
    fake.faults(download_cut=1)
    with pytest.raises(UpstreamBusy):
        await ark.download(upstream_id, task, dest, 10 * MB)
    assert not dest.exists()
    with pytest.raises(UpstreamRefused) as large:
        await ark.download(upstream_id, task, dest, 1024)
    assert large.value.code == "upstream_video_too_large"
    assert not dest.exists()
    assert task.video_url is not None
    tampered = task.video_url.replace("%2B", "+").replace("%2F", "/").replace("%3D", "=")
    with pytest.raises(UpstreamGone):  # proof that the fake checks the raw query string
        await ark.download(upstream_id, UpstreamTask(task.state, video_url=tampered), dest, MB)
    await ark.download(upstream_id, task, dest, 10 * MB)
    assert frames_of(dest)[0] == 48
    fake.advance(24 * 3600 + 5)
    with pytest.raises(UpstreamGone) as gone:
        await ark.download(upstream_id, task, tmp_path / "late.mp4", 10 * MB)
    assert gone.value.code == "upstream_video_expired"
    assert not (tmp_path / "late.mp4").exists()


async def test_cancel(fakes: Callable[..., RunningFake]) -> None:
    fake = fakes(min_seconds=30, max_seconds=30)
    provider = ArkProvider("ark-test", config(fake.url("/api/v3")), KEY)
    queued = await provider.submit(job())
    await provider.cancel(queued)
    assert (await provider.get(queued)).state is UpstreamState.CANCELLED
    await provider.cancel("cgt-20250101000000-nope0")  # unknown: fine
    running = await provider.submit(job())
    fake.advance(10)
    with pytest.raises(UpstreamRefused) as caught:
        await provider.cancel(running)
    assert caught.value.code == "upstream_not_cancellable"
    fake.advance(30)
    await provider.cancel(running)  # finished: its record is deleted
    with pytest.raises(UpstreamGone):
        await provider.get(running)
    await provider.close()


# The adapter's reading of answers the fake does not give, over a mock transport.


def mock(handler: Callable[[httpx.Request], httpx.Response]) -> ArkProvider:
    return ArkProvider(
        "ark-mock",
        config("https://ark.invalid/api/v3"),
        KEY,
        transport=httpx.MockTransport(handler),
    )


def answer(body: object, status: int = 200) -> Callable[[httpx.Request], httpx.Response]:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, json=body)

    return handler


async def read(body: object) -> UpstreamTask:
    provider = mock(answer(body))
    try:
        return await provider.get("cgt-1")
    finally:
        await provider.close()


@pytest.mark.parametrize(
    ("status", "state"),
    [
        ("pending", UpstreamState.QUEUED),
        ("processing", UpstreamState.RUNNING),
        ("cancelled", UpstreamState.CANCELLED),
        ("Running", UpstreamState.RUNNING),
    ],
)
async def test_status_variants(status: str, state: UpstreamState) -> None:
    assert (await read({"id": "cgt-1", "status": status})).state is state


async def test_odd_answers() -> None:
    cases: list[tuple[object, int, type[UpstreamError]]] = [
        ({"status": "teleported"}, 200, UpstreamBusy),
        ({"status": "succeeded", "content": {}}, 200, UpstreamBusy),
        (["not", "an", "object"], 200, UpstreamBusy),
        ({"error": {"code": "AuthenticationError"}}, 401, UpstreamBusy),
    ]
    for body, status, error in cases:
        provider = mock(answer(body, status))
        with pytest.raises(error):
            await provider.get("cgt-1")
        await provider.close()
    provider = mock(answer({"safety_identifier": "x"}))  # 200 without an id
    with pytest.raises(UpstreamUncertain):
        await provider.submit(job())
    await provider.close()


async def test_tokens_and_expiry_are_read() -> None:
    body = {
        "id": "cgt-1",
        "status": "succeeded",
        "content": {"video_url": "https://tos.example/v.mp4?a=%2B"},
        "usage": {"total_tokens": 99},
        "updated_at": 1_700_000_000,
    }
    task = await read(body)
    assert task.video_url == "https://tos.example/v.mp4?a=%2B"
    assert (task.usage_tokens, task.video_expires_at) == (99, 1_700_000_000 + 24 * 3600)
    del body["updated_at"]
    assert (await read(body)).video_expires_at is None


async def test_provider_messages_are_made_safe() -> None:
    message = (
        f"The image at https://files.example/in.png?X-Sig=abc (key {KEY}) from "
        "/srv/reelgate/data/x.png may contain sensitive information. Request id: 0217"
    )
    error = {"code": "InputImageSensitiveContentDetected", "message": message}
    provider = mock(answer({"error": error}, 400))
    with pytest.raises(UpstreamRefused) as caught:
        await provider.submit(job())
    await provider.close()
    shown = caught.value.message
    assert caught.value.code == "content_rejected"
    assert "files.example" not in shown and KEY not in shown and "/srv/" not in shown
    assert "sensitive information. Request id: 0217" in shown
    failed = await read(
        {"status": "failed", "error": {"code": "InternalServiceError", "message": ""}}
    )
    assert (failed.error_code, failed.error_message) == (
        "upstream_failed",
        "the provider refused the task (InternalServiceError)",
    )
