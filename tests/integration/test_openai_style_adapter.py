"""The OpenAI-style adapter against the fake (``dialect="openai"``) on loopback."""

from __future__ import annotations

import io
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import av
import pytest
import pytest_asyncio
from PIL import Image

from reelgate.backends.remote.fakes.cometapi import FakeCometSettings, fake_cometapi_app
from reelgate.backends.remote.openai_style import OpenAiStyleProvider, pixel_size
from reelgate.config import ProviderConfig
from reelgate.domain.errors import UpstreamBusy, UpstreamGone, UpstreamRefused, UpstreamUncertain
from reelgate.ports import UpstreamJob, UpstreamState, UpstreamTask
from tests.upstreams import RunningFake, free_port, start_fake

pytestmark = pytest.mark.asyncio(loop_scope="module")  # one adapter for the module

KEY = "openai-test-key"
RUN = 10.0  # every fake video: queued for 2 s, in progress until 10 s, then done
TTL = 600.0


def png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (32, 24), (40, 200, 40)).save(buffer, "PNG")
    return buffer.getvalue()


def job(prompt: str = "a paper boat on a river", **changes: object) -> UpstreamJob:
    fields: dict[str, object] = {
        "task_id": "task_ours",
        "model": "sora-2",
        "prompt": prompt,
        "seconds": 4,
        "size": "16:9",
        "resolution": "720p",
    }
    fields.update(changes)
    return UpstreamJob(**fields)  # type: ignore[arg-type]


def frames_of(path: Path) -> int:
    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(video=0))


@pytest.fixture(scope="module")
def fake() -> Iterator[RunningFake]:
    settings = FakeCometSettings(
        dialect="openai", api_keys=(KEY,), min_seconds=RUN, max_seconds=RUN, url_ttl=TTL
    )
    with start_fake(fake_cometapi_app(settings)) as running:
        yield running


@pytest.fixture(autouse=True)
def _fresh(fake: RunningFake) -> None:
    fake.reset()


def make(base_url: str, key: str = KEY, **config: object) -> OpenAiStyleProvider:
    settings = ProviderConfig(kind="openai", base_url=base_url, api_key_env="OPENAI_KEY", **config)
    return OpenAiStyleProvider("openai", settings, key)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def provider(fake: RunningFake) -> AsyncIterator[OpenAiStyleProvider]:
    adapter = make(fake.base_url, timeout=5)
    yield adapter
    await adapter.close()


def fake_task(fake: RunningFake, upstream_id: str) -> object:
    return fake.app.state.fake.tasks[upstream_id]  # type: ignore[attr-defined]


async def test_text_video_goes_through_its_states_and_downloads_with_our_key(
    fake: RunningFake, provider: OpenAiStyleProvider, tmp_path: Path
) -> None:
    upstream_id = await provider.submit(job())
    assert upstream_id.startswith("video_")
    task = fake_task(fake, upstream_id)
    assert (task.seconds, task.size) == (4, "1280x720")  # type: ignore[attr-defined]
    assert (await provider.get(upstream_id)) == UpstreamTask(UpstreamState.QUEUED, progress=0)
    fake.advance(5)
    running = await provider.get(upstream_id)
    assert (running.state, running.progress) == (UpstreamState.RUNNING, 50)
    fake.advance(6)
    done = await provider.get(upstream_id)
    assert done.state is UpstreamState.SUCCEEDED
    assert done.progress == 100
    assert done.video_url == f"{fake.base_url}/v1/videos/{upstream_id}/content"
    assert done.video_expires_at is not None
    assert done.video_expires_at > time.time() + TTL - 30
    dest = tmp_path / "video.mp4"
    await provider.download(upstream_id, done, dest, 10**7)
    assert frames_of(dest) == 4 * 24
    stats = fake.stats()
    assert stats["downloads"] == 1
    assert stats["download_headers"][-1]["authorization"] == f"Bearer {KEY}"
    assert stats["prompts"] == {"a paper boat on a river": 1}
    assert stats["body_types"] == {"multipart/form-data": 1}


async def test_image_video_sends_the_image_and_pixel_size(
    fake: RunningFake, provider: OpenAiStyleProvider
) -> None:
    upstream_id = await provider.submit(
        job(image=png(), image_type="image/png", size="9:16", resolution="480p", seconds=8)
    )
    assert fake.stats()["images"] == 1
    task = fake_task(fake, upstream_id)
    assert (task.seconds, task.size) == (8, "480x854")  # type: ignore[attr-defined]


async def test_pixel_sizes() -> None:
    assert pixel_size("16:9", "720p") == "1280x720"
    assert pixel_size("9:16", "720p") == "720x1280"
    assert pixel_size("1:1", "1080p") == "1080x1080"


async def test_a_size_without_pixels_is_refused(provider: OpenAiStyleProvider) -> None:
    with pytest.raises(UpstreamRefused) as refused:
        await provider.submit(job(resolution="4k"))
    assert refused.value.code == "invalid_parameter"


@pytest.mark.parametrize(
    ("status", "state"),
    [
        ("queued", UpstreamState.QUEUED),
        ("QUEUED", UpstreamState.QUEUED),
        ("in_progress", UpstreamState.RUNNING),
        ("IN_PROGRESS", UpstreamState.RUNNING),
        ("cancelled", UpstreamState.CANCELLED),
        ("expired", UpstreamState.EXPIRED),
    ],
)
async def test_status_table(
    provider: OpenAiStyleProvider, status: str, state: UpstreamState
) -> None:
    assert provider._task({"status": status, "progress": 7}, "video_1") == UpstreamTask(
        state, progress=7
    )


@pytest.mark.parametrize(
    ("status", "code", "ours"),
    [
        ("failed", "moderation_blocked", "content_rejected"),
        ("failed", "content_policy_violation", "content_rejected"),
        ("FAILED", "video_generation_failed", "upstream_failed"),
        ("failed", None, "upstream_failed"),
        ("error", "internal_error", "upstream_error"),
    ],
)
async def test_failure_codes(
    provider: OpenAiStyleProvider, status: str, code: str | None, ours: str
) -> None:
    task = provider._task({"status": status, "error": {"code": code, "message": "nope"}}, "v")
    assert (task.state, task.error_code, task.error_message) == (
        UpstreamState.FAILED,
        ours,
        "nope",
    )


async def test_unknown_status_is_busy(provider: OpenAiStyleProvider) -> None:
    with pytest.raises(UpstreamBusy):
        provider._task({"status": "thinking"}, "video_1")


async def test_failed_video(fake: RunningFake, provider: OpenAiStyleProvider) -> None:
    upstream_id = await provider.submit(job("a dog [[fake:fail]]"))
    fake.advance(RUN)
    task = await provider.get(upstream_id)
    assert (task.state, task.error_code) == (UpstreamState.FAILED, "content_rejected")
    errored = await provider.submit(job("a dog [[fake:error]]"))
    fake.advance(RUN)
    task = await provider.get(errored)
    assert (task.state, task.error_code) == (UpstreamState.FAILED, "upstream_failed")


async def test_refusals_at_submit(fake: RunningFake, provider: OpenAiStyleProvider) -> None:
    with pytest.raises(UpstreamRefused) as refused:
        await provider.submit(job("a dog [[fake:refuse]]"))
    assert refused.value.code == "content_rejected"
    with pytest.raises(UpstreamRefused) as invalid:
        await provider.submit(job(seconds=60))
    assert invalid.value.code == "invalid_parameter"
    assert "seconds" in invalid.value.message
    wrong = make(fake.base_url, key="not-the-key")
    try:
        with pytest.raises(UpstreamRefused) as denied:
            await wrong.submit(job())
        assert denied.value.code == "upstream_refused"
    finally:
        await wrong.close()
    assert fake.stats()["creates"] == 0


async def test_429_keeps_retry_after_and_5xx_is_busy(
    fake: RunningFake, provider: OpenAiStyleProvider
) -> None:
    fake.faults(create_429=1, retry_after=3, create_500=1, create_503=1)
    with pytest.raises(UpstreamBusy) as busy:
        await provider.submit(job())
    assert busy.value.retry_after == 3
    for _ in range(2):
        with pytest.raises(UpstreamBusy):
            await provider.submit(job())
    upstream_id = await provider.submit(job())
    fake.faults(get_429=1, get_500=1, get_malformed=1)
    for _ in range(3):
        with pytest.raises(UpstreamBusy):
            await provider.get(upstream_id)
    assert (await provider.get(upstream_id)).state is UpstreamState.QUEUED
    fake.faults(outage=True)
    with pytest.raises(UpstreamBusy):
        await provider.get(upstream_id)


async def test_hung_submit_is_uncertain(fake: RunningFake) -> None:
    fake.faults(create_hang=1, hang_seconds=5)
    adapter = make(fake.base_url, timeout=0.3)
    try:
        with pytest.raises(UpstreamUncertain):
            await adapter.submit(job())
    finally:
        await adapter.close()
    assert fake.stats()["creates"] == 1


async def test_closed_port_is_busy() -> None:
    adapter = make(f"http://127.0.0.1:{free_port()}/v1")
    try:
        with pytest.raises(UpstreamBusy):
            await adapter.submit(job())
    finally:
        await adapter.close()


async def test_unknown_id_is_gone(provider: OpenAiStyleProvider) -> None:
    with pytest.raises(UpstreamGone) as gone:
        await provider.get("video_nobody")
    assert gone.value.code == "upstream_task_missing"


async def _finished(fake: RunningFake, provider: OpenAiStyleProvider) -> tuple[str, UpstreamTask]:
    upstream_id = await provider.submit(job())
    fake.advance(RUN)
    return upstream_id, await provider.get(upstream_id)


async def test_expired_content_is_gone(
    fake: RunningFake, provider: OpenAiStyleProvider, tmp_path: Path
) -> None:
    upstream_id, done = await _finished(fake, provider)
    fake.advance(TTL + 1)
    dest = tmp_path / "video.mp4"
    with pytest.raises(UpstreamGone):
        await provider.download(upstream_id, done, dest, 10**7)
    assert not dest.exists()


async def test_cut_download_is_busy_and_too_large_is_refused(
    fake: RunningFake, provider: OpenAiStyleProvider, tmp_path: Path
) -> None:
    upstream_id, done = await _finished(fake, provider)
    fake.faults(download_cut=1)
    dest = tmp_path / "video.mp4"
    with pytest.raises(UpstreamBusy):
        await provider.download(upstream_id, done, dest, 10**7)
    assert not dest.exists()
    with pytest.raises(UpstreamRefused) as refused:
        await provider.download(upstream_id, done, dest, 1024)
    assert refused.value.code == "upstream_video_too_large"
    assert not dest.exists()


async def test_cancel_deletes_and_is_idempotent(
    fake: RunningFake, provider: OpenAiStyleProvider
) -> None:
    upstream_id = await provider.submit(job())
    await provider.cancel(upstream_id)
    with pytest.raises(UpstreamGone):
        await provider.get(upstream_id)
    await provider.cancel(upstream_id)  # 404 now: nothing more to do
    assert fake.stats()["cancels"] == 2
    assert await provider.find_lost(job(), since=0.0, known=()) is None


async def test_base_url_ending_in_v1(fake: RunningFake, tmp_path: Path) -> None:
    adapter = make(f"{fake.base_url}/v1")
    try:
        upstream_id = await adapter.submit(job(seconds=2))
        fake.advance(RUN)
        done = await adapter.get(upstream_id)
        assert done.video_url == f"{fake.base_url}/v1/videos/{upstream_id}/content"
        dest = tmp_path / "video.mp4"
        await adapter.download(upstream_id, done, dest, 10**7)
        assert frames_of(dest) == 48
    finally:
        await adapter.close()
