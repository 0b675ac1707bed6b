"""The CometAPI adapter against the fake CometAPI on loopback, and against reelgate itself."""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import unquote

import av
import pytest
import pytest_asyncio
from PIL import Image

from reelgate.backends.remote.cometapi import CometApiProvider
from reelgate.backends.remote.fakes.cometapi import FakeCometSettings, fake_cometapi_app
from reelgate.config import ProviderConfig
from reelgate.domain.errors import UpstreamBusy, UpstreamGone, UpstreamRefused, UpstreamUncertain
from reelgate.ports import UpstreamJob, UpstreamState, UpstreamTask
from tests.server import start_server
from tests.upstreams import RunningFake, free_port, start_fake

pytestmark = pytest.mark.asyncio(loop_scope="module")  # one adapter for the module

KEY = "comet-test-key"
RUN = 10.0  # every fake task: queued for 2 s, running until 10 s, then done
TTL = 600.0


def png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (32, 24), (200, 40, 40)).save(buffer, "PNG")
    return buffer.getvalue()


def job(prompt: str = "a lighthouse at dusk", **changes: object) -> UpstreamJob:
    fields: dict[str, object] = {
        "task_id": "task_ours",
        "model": "doubao-seedance-2-0-fast",
        "prompt": prompt,
        "seconds": 4,
        "size": "16:9",
        "resolution": "480p",
    }
    fields.update(changes)
    return UpstreamJob(**fields)  # type: ignore[arg-type]


def frames_of(path: Path) -> int:
    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(video=0))


@pytest.fixture(scope="module")
def fake() -> Iterator[RunningFake]:
    settings = FakeCometSettings(
        api_keys=(KEY,), min_seconds=RUN, max_seconds=RUN, url_ttl=TTL, seed=1
    )
    with start_fake(fake_cometapi_app(settings)) as running:
        yield running


@pytest.fixture(autouse=True)
def _fresh(fake: RunningFake) -> None:
    fake.reset()


def make(base_url: str, key: str = KEY, **config: object) -> CometApiProvider:
    settings = ProviderConfig(kind="cometapi", base_url=base_url, api_key_env="COMET_KEY", **config)
    return CometApiProvider("comet", settings, key)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def provider(fake: RunningFake) -> AsyncIterator[CometApiProvider]:
    adapter = make(fake.base_url, timeout=5)
    yield adapter
    await adapter.close()


async def test_text_task_goes_through_its_states_and_downloads(
    fake: RunningFake, provider: CometApiProvider, tmp_path: Path
) -> None:
    upstream_id = await provider.submit(job())
    assert upstream_id.startswith("task_")
    assert (await provider.get(upstream_id)) == UpstreamTask(UpstreamState.QUEUED, progress=0)
    fake.advance(5)
    running = await provider.get(upstream_id)
    assert running.state is UpstreamState.RUNNING
    assert running.progress == 50
    fake.advance(6)
    done = await provider.get(upstream_id)
    assert done.state is UpstreamState.SUCCEEDED
    assert done.progress == 100
    assert done.video_url is not None
    assert done.video_url.startswith(f"{fake.base_url}/_fake/videos/{upstream_id}.mp4?")
    assert done.video_expires_at is not None
    assert done.video_expires_at > time.time() + TTL - 30
    dest = tmp_path / "video.mp4"
    await provider.download(upstream_id, done, dest, 10_000_000)
    assert frames_of(dest) == 4 * 24
    stats = fake.stats()
    assert stats["creates"] == 1
    assert stats["images"] == 0
    assert stats["prompts"] == {"a lighthouse at dusk": 1}
    assert stats["body_types"] == {"multipart/form-data": 1}
    assert stats["downloads"] == 1
    assert "authorization" not in stats["download_headers"][-1]


async def test_image_task_sends_the_image_as_a_file_part(
    fake: RunningFake, provider: CometApiProvider
) -> None:
    upstream_id = await provider.submit(job(image=png(), image_type="image/png"))
    assert fake.stats()["images"] == 1
    task = fake.app.state.fake.tasks[upstream_id]  # type: ignore[attr-defined]
    assert (task.seconds, task.size, task.resolution) == (4, "16:9", "480p")


async def test_download_without_a_url_in_hand_asks_for_it(
    fake: RunningFake, provider: CometApiProvider, tmp_path: Path
) -> None:
    upstream_id = await provider.submit(job(seconds=2))
    fake.advance(RUN)
    dest = tmp_path / "video.mp4"
    await provider.download(upstream_id, UpstreamTask(UpstreamState.SUCCEEDED), dest, 10**7)
    assert frames_of(dest) == 2 * 24


async def test_lowercase_statuses_map_too(fake: RunningFake, provider: CometApiProvider) -> None:
    fake.faults(lowercase=True)
    upstream_id = await provider.submit(job())
    assert (await provider.get(upstream_id)).state is UpstreamState.QUEUED
    fake.advance(3)
    assert (await provider.get(upstream_id)).state is UpstreamState.RUNNING
    fake.advance(RUN)
    done = await provider.get(upstream_id)
    assert done.state is UpstreamState.SUCCEEDED
    assert done.video_url


@pytest.mark.parametrize(
    ("status", "state"),
    [
        ("SUBMITTED", UpstreamState.QUEUED),
        ("submitted", UpstreamState.QUEUED),
        ("queued", UpstreamState.QUEUED),
        ("NOT_START", UpstreamState.QUEUED),
        ("IN_PROGRESS", UpstreamState.RUNNING),
        ("in_progress", UpstreamState.RUNNING),
        ("running", UpstreamState.RUNNING),
        ("CANCELLED", UpstreamState.CANCELLED),
        ("expired", UpstreamState.EXPIRED),
    ],
)
async def test_status_table(provider: CometApiProvider, status: str, state: UpstreamState) -> None:
    task = provider._task({"status": status, "progress": "45%"})
    assert task == UpstreamTask(state, progress=45)


@pytest.mark.parametrize("status", ["SUCCESS", "success", "completed", "SUCCEEDED"])
async def test_success_keeps_the_url_exactly(provider: CometApiProvider, status: str) -> None:
    url = "https://cdn.example/v.mp4?X-Sig=a%2Bb%3D&e=1"
    task = provider._task({"status": status, "video_url": url})
    assert task.state is UpstreamState.SUCCEEDED
    assert task.video_url == url
    assert task.progress == 100


@pytest.mark.parametrize(
    ("status", "error", "code"),
    [
        ("FAILED", {"code": "content_policy_violation", "message": "no"}, "content_rejected"),
        ("failed", {"code": "prompt_sensitive", "message": "no"}, "content_rejected"),
        ("FAILED", {"code": "moderation_blocked", "message": "no"}, "content_rejected"),
        ("FAILED", {"code": "quota", "message": "no"}, "upstream_failed"),
        ("FAILURE", None, "upstream_failed"),
        ("ERROR", {"code": "internal_error", "message": "no"}, "upstream_error"),
        ("error", {"code": "content_policy", "message": "no"}, "upstream_error"),
    ],
)
async def test_failure_codes(
    provider: CometApiProvider, status: str, error: object, code: str
) -> None:
    task = provider._task({"status": status, "error": error})
    assert task.state is UpstreamState.FAILED
    assert task.error_code == code
    assert task.error_message


@pytest.mark.parametrize(
    "body",
    [{"status": "WEIRD"}, {"progress": 3}, {"status": "SUCCESS"}, {"status": 7}],
)
async def test_unknown_status_or_success_without_url_is_busy(
    provider: CometApiProvider, body: dict[str, object]
) -> None:
    with pytest.raises(UpstreamBusy):
        provider._task(body)


@pytest.mark.parametrize(
    ("marker", "code"),
    [("[[fake:fail]]", "content_rejected"), ("[[fake:error]]", "upstream_error")],
)
async def test_failed_tasks(
    fake: RunningFake, provider: CometApiProvider, marker: str, code: str
) -> None:
    upstream_id = await provider.submit(job(f"a cat {marker}"))
    fake.advance(RUN)
    task = await provider.get(upstream_id)
    assert task.state is UpstreamState.FAILED
    assert task.error_code == code
    assert task.error_message
    assert task.video_url is None


async def test_refusals_at_submit(fake: RunningFake, provider: CometApiProvider) -> None:
    with pytest.raises(UpstreamRefused) as refused:
        await provider.submit(job("a cat [[fake:refuse]]"))
    assert refused.value.code == "content_rejected"
    with pytest.raises(UpstreamRefused) as invalid:
        await provider.submit(job(seconds=99))
    assert invalid.value.code == "invalid_parameter"
    assert "seconds" in invalid.value.message
    with pytest.raises(UpstreamRefused) as missing:
        await provider.submit(job(""))
    assert missing.value.code == "invalid_parameter"
    wrong = make(fake.base_url, key="not-the-key")
    try:
        with pytest.raises(UpstreamRefused) as denied:
            await wrong.submit(job())
        assert denied.value.code == "upstream_refused"
        assert "not-the-key" not in denied.value.message
    finally:
        await wrong.close()
    assert fake.stats()["creates"] == 0


async def test_429_keeps_retry_after(fake: RunningFake, provider: CometApiProvider) -> None:
    fake.faults(create_429=1, get_429=1, retry_after=7)
    with pytest.raises(UpstreamBusy) as busy:
        await provider.submit(job())
    assert busy.value.retry_after == 7
    upstream_id = await provider.submit(job())
    with pytest.raises(UpstreamBusy) as get_busy:
        await provider.get(upstream_id)
    assert get_busy.value.retry_after == 7
    assert (await provider.get(upstream_id)).state is UpstreamState.QUEUED


async def test_5xx_and_outage_are_busy(fake: RunningFake, provider: CometApiProvider) -> None:
    fake.faults(create_500=1, create_503=1, get_500=1)
    for _ in range(2):
        with pytest.raises(UpstreamBusy):
            await provider.submit(job())
    upstream_id = await provider.submit(job())
    with pytest.raises(UpstreamBusy):
        await provider.get(upstream_id)
    fake.faults(outage=True)
    with pytest.raises(UpstreamBusy):
        await provider.submit(job())
    with pytest.raises(UpstreamBusy):
        await provider.get(upstream_id)
    assert fake.stats()["creates"] == 1


async def test_hung_submit_is_uncertain(fake: RunningFake) -> None:
    fake.faults(create_hang=1, hang_seconds=5)
    adapter = make(fake.base_url, timeout=0.3)
    try:
        with pytest.raises(UpstreamUncertain):
            await adapter.submit(job())
    finally:
        await adapter.close()
    assert fake.stats()["creates"] == 1  # the provider has it


async def test_closed_port_is_busy() -> None:
    adapter = make(f"http://127.0.0.1:{free_port()}")
    try:
        with pytest.raises(UpstreamBusy):
            await adapter.submit(job())
        with pytest.raises(UpstreamBusy):
            await adapter.get("task_x")
    finally:
        await adapter.close()


async def test_malformed_json_on_get_is_busy(fake: RunningFake, provider: CometApiProvider) -> None:
    upstream_id = await provider.submit(job())
    fake.faults(get_malformed=1)
    with pytest.raises(UpstreamBusy):
        await provider.get(upstream_id)
    assert (await provider.get(upstream_id)).state is UpstreamState.QUEUED


async def test_unknown_id_is_gone(provider: CometApiProvider) -> None:
    with pytest.raises(UpstreamGone) as gone:
        await provider.get("task_nobody/../x")
    assert gone.value.code == "upstream_task_missing"


async def _finished(fake: RunningFake, provider: CometApiProvider) -> tuple[str, UpstreamTask]:
    upstream_id = await provider.submit(job())
    fake.advance(RUN)
    return upstream_id, await provider.get(upstream_id)


async def test_the_url_is_used_exactly_as_returned(
    fake: RunningFake, provider: CometApiProvider, tmp_path: Path
) -> None:
    upstream_id, done = await _finished(fake, provider)
    assert done.video_url is not None
    assert "%3D" in done.video_url  # the signature is percent-encoded: it must stay so
    dest = tmp_path / "video.mp4"
    decoded = UpstreamTask(UpstreamState.SUCCEEDED, video_url=unquote(done.video_url))
    with pytest.raises(UpstreamGone):  # the fake checks the raw query string
        await provider.download(upstream_id, decoded, dest, 10**7)
    assert not dest.exists()
    await provider.download(upstream_id, done, dest, 10**7)
    assert frames_of(dest) == 96


async def test_expired_url_is_gone(
    fake: RunningFake, provider: CometApiProvider, tmp_path: Path
) -> None:
    upstream_id, done = await _finished(fake, provider)
    fake.advance(TTL + 1)
    dest = tmp_path / "video.mp4"
    with pytest.raises(UpstreamGone) as gone:
        await provider.download(upstream_id, done, dest, 10**7)
    assert gone.value.code == "upstream_video_expired"
    assert not dest.exists()


async def test_cut_download_is_busy_and_leaves_no_file(
    fake: RunningFake, provider: CometApiProvider, tmp_path: Path
) -> None:
    upstream_id, done = await _finished(fake, provider)
    fake.faults(download_cut=1)
    dest = tmp_path / "video.mp4"
    with pytest.raises(UpstreamBusy):
        await provider.download(upstream_id, done, dest, 10**7)
    assert not dest.exists()
    assert fake.stats()["downloads_cut"] == 1


async def test_too_large_video_is_refused(
    fake: RunningFake, provider: CometApiProvider, tmp_path: Path
) -> None:
    upstream_id, done = await _finished(fake, provider)
    dest = tmp_path / "video.mp4"
    with pytest.raises(UpstreamRefused) as refused:
        await provider.download(upstream_id, done, dest, 1024)
    assert refused.value.code == "upstream_video_too_large"
    assert not dest.exists()


async def test_cancel_without_a_route_is_tolerated_and_nothing_is_lost(
    fake: RunningFake, provider: CometApiProvider
) -> None:
    upstream_id = await provider.submit(job())
    await provider.cancel(upstream_id)
    assert (await provider.get(upstream_id)).state is UpstreamState.QUEUED
    assert await provider.find_lost(job(), since=0.0, known=()) is None


async def test_base_url_ending_in_v1(fake: RunningFake) -> None:
    adapter = make(f"{fake.base_url}/v1/")
    try:
        upstream_id = await adapter.submit(job())
        assert (await adapter.get(upstream_id)).state is UpstreamState.QUEUED
    finally:
        await adapter.close()


async def _settled(adapter: CometApiProvider, upstream_id: str) -> UpstreamTask:
    deadline = time.monotonic() + 20
    task = await adapter.get(upstream_id)
    while task.state in (UpstreamState.QUEUED, UpstreamState.RUNNING):
        assert time.monotonic() < deadline, f"still {task.state} at the deadline"
        await asyncio.sleep(0.05)
        task = await adapter.get(upstream_id)
    return task


async def test_against_a_real_reelgate(tmp_path: Path) -> None:
    server = await asyncio.to_thread(start_server, tmp_path / "reelgate", renderer="instant")
    adapter = make(server.base_url, key=server.api_key, timeout=10)
    try:
        upstream_id = await adapter.submit(
            job(image=png(), image_type="image/png", seconds=4, resolution="480p")
        )
        failing = await adapter.submit(job("a storm [[sandbox:fail]]"))
        task = await _settled(adapter, upstream_id)
        assert task.state is UpstreamState.SUCCEEDED, task
        assert task.video_url is not None
        assert task.video_url.startswith(server.base_url)
        assert task.video_expires_at is not None
        dest = tmp_path / "video.mp4"
        await adapter.download(upstream_id, task, dest, 10**7)
        assert frames_of(dest) >= 1
        failed = await _settled(adapter, failing)
        assert (failed.state, failed.error_code) == (UpstreamState.FAILED, "content_rejected")
        with pytest.raises(UpstreamGone):
            await adapter.get("task_not_mine")
        with pytest.raises(UpstreamRefused) as refused:
            await adapter.submit(job(seconds=99))
        assert refused.value.code == "invalid_parameter"
    finally:
        await adapter.close()
        await asyncio.to_thread(server.stop)
