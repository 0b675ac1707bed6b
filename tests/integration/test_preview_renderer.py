"""The preview renderer end to end: real MP4 files, decoded back, and real process pools."""

from __future__ import annotations

import asyncio
import io
import multiprocessing
import os
import pickle
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
import numpy.typing as npt
import pytest
from PIL import Image, ImageDraw, ImageOps

from reelgate.domain.errors import RenderError, RenderRejected
from reelgate.ports import RenderJob
from reelgate.renderers.preview import (
    ERROR_MARKER,
    FAIL_MARKER,
    InstantRenderer,
    PreviewRenderer,
    render_preview,
)

FPS = 24
MARKERS = [(FAIL_MARKER, RenderRejected), (ERROR_MARKER, RenderError)]


def make_job(
    prompt: str = "a lighthouse at dusk",
    *,
    seconds: int = 1,
    size: tuple[int, int] = (320, 180),
    image: bytes | None = None,
    model: str = "doubao-seedance-2-0",
) -> RenderJob:
    return RenderJob("task_test", model, prompt, seconds, size[0], size[1], FPS, image)


@dataclass
class Probe:
    codec: str
    pix_fmt: str
    width: int
    height: int
    frames: int
    duration: float


def probe(path: Path) -> Probe:
    """What a player sees in the file: stream facts, decoded frame count, duration."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = sum(1 for _ in container.decode(stream))
        assert container.duration is not None
        return Probe(
            stream.codec_context.name,
            str(stream.codec_context.pix_fmt),
            stream.width,
            stream.height,
            frames,
            container.duration / av.time_base,
        )


def decoded(path: Path, count: int) -> list[npt.NDArray[np.int16]]:
    """The first ``count`` frames as rgb24, widened so that differences do not wrap."""
    with av.open(str(path)) as container:
        frames = container.decode(video=0)
        return [next(frames).to_ndarray(format="rgb24").astype(np.int16) for _ in range(count)]


def picture(size: tuple[int, int] = (480, 360)) -> bytes:
    image = Image.linear_gradient("L").resize(size).convert("RGB")
    ImageDraw.Draw(image).ellipse((100, 60, 380, 300), fill=(220, 120, 30))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=92)
    return buffer.getvalue()


class Progress:
    """A progress callback that records what it was given and when."""

    def __init__(self) -> None:
        self.values: list[int] = []
        self.times: list[float] = []
        self.first = asyncio.Event()

    def __call__(self, value: int) -> None:
        self.values.append(value)
        self.times.append(time.monotonic())

    async def report(self, value: int) -> None:
        self(value)
        self.first.set()

    def check(self) -> None:
        """Increasing, within 0..99, ending at 99, not one call per frame."""
        assert len(self.values) >= 5
        assert self.values == sorted(set(self.values))
        assert self.values[0] == 0
        assert self.values[-1] == 99


@pytest.mark.slow
def test_render_writes_an_h264_mp4_of_the_job(tmp_path: Path) -> None:
    out, progress = tmp_path / "out.mp4", Progress()
    render_preview(make_job(seconds=2, size=(854, 480)), out, progress)
    video = probe(out)
    assert (video.codec, video.pix_fmt) == ("h264", "yuv420p")
    assert (video.width, video.height, video.frames) == (854, 480, 2 * FPS)
    assert abs(video.duration - 2) <= 1 / FPS
    progress.check()
    assert len(progress.values) <= 34


def test_render_is_deterministic(tmp_path: Path) -> None:
    paths = [tmp_path / f"{name}.mp4" for name in ("a", "b", "c")]
    for path, prompt in zip(paths, ["a red fox", "a red fox", "a blue whale"], strict=True):
        render_preview(make_job(prompt), path, lambda _: None)
    assert paths[0].read_bytes() == paths[1].read_bytes()
    first, again, other = (decoded(path, 14) for path in paths)
    for index in (0, 13):
        assert np.array_equal(first[index], again[index])
        assert np.abs(first[index] - other[index]).mean() > 5


def test_image_to_video_starts_with_the_image(tmp_path: Path) -> None:
    data, out = picture(), tmp_path / "out.mp4"
    render_preview(make_job(image=data), out, lambda _: None)
    with Image.open(io.BytesIO(data)) as image:
        expected = ImageOps.fit(image.convert("RGB"), (320, 180), Image.Resampling.LANCZOS)
    frames = decoded(out, FPS)
    first, last = frames[0], frames[-1]
    assert np.abs(first - np.asarray(expected, dtype=np.int16)).mean() < 4
    assert np.abs(last - first).mean() > 2
    assert probe(out).frames == FPS


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs Linux /proc")
def test_the_encoder_starts_no_threads(tmp_path: Path) -> None:
    threads = len(os.listdir("/proc/self/task"))
    seen: list[int] = []
    render_preview(
        make_job(), tmp_path / "out.mp4", lambda _: seen.append(len(os.listdir("/proc/self/task")))
    )
    assert max(seen) <= threads


def test_the_delay_is_spread_over_the_render(tmp_path: Path) -> None:
    progress, start = Progress(), time.monotonic()
    render_preview(make_job(), tmp_path / "out.mp4", progress, delay=0.6)
    assert time.monotonic() - start >= 0.6
    halfway = next(t for t, v in zip(progress.times, progress.values, strict=True) if v >= 50)
    assert 0.2 <= halfway - start <= 0.5
    progress.check()


@pytest.mark.parametrize(("marker", "error"), MARKERS)
def test_a_marker_fails_the_render_after_early_progress(
    tmp_path: Path, marker: str, error: type[RenderError]
) -> None:
    out, progress = tmp_path / "out.mp4", Progress()
    with pytest.raises(error) as raised:
        render_preview(make_job(f"a cat {marker} on a mat"), out, progress)
    assert type(raised.value) is error
    assert marker in raised.value.message
    assert len(progress.values) >= 2
    assert max(progress.values) < 50
    assert not out.exists()


def test_the_fail_marker_wins_over_the_error_marker(tmp_path: Path) -> None:
    with pytest.raises(RenderRejected):
        render_preview(make_job(ERROR_MARKER + FAIL_MARKER), tmp_path / "o.mp4", lambda _: None)


def test_an_undecodable_image_is_rejected(tmp_path: Path) -> None:
    out = tmp_path / "out.mp4"
    with pytest.raises(RenderRejected):
        render_preview(make_job(image=b"\x89PNG\r\n\x1a\n broken"), out, lambda _: None)
    assert not out.exists()


@pytest.mark.parametrize("error", [RenderError, RenderRejected])
def test_render_errors_survive_pickling(error: type[RenderError]) -> None:
    copy = pickle.loads(pickle.dumps(error("the message")))
    assert type(copy) is error
    assert (copy.message, copy.code, str(copy)) == ("the message", error.code, "the message")


@pytest.fixture(scope="module")
def renderer() -> Iterator[PreviewRenderer]:
    """One pool of two processes for the tests that need no pool of their own."""
    shared = PreviewRenderer(processes=2)
    yield shared
    asyncio.run(shared.close())


@pytest.mark.slow
async def test_the_pool_renders_and_relays_progress(
    renderer: PreviewRenderer, tmp_path: Path
) -> None:
    out, progress = tmp_path / "out.mp4", Progress()
    await renderer.render(make_job(size=(854, 480)), out, progress.report)
    video = probe(out)
    assert (video.codec, video.width, video.height, video.frames) == ("h264", 854, 480, FPS)
    progress.check()


@pytest.mark.slow
async def test_concurrent_renders_each_get_their_own_progress(
    renderer: PreviewRenderer, tmp_path: Path
) -> None:
    progresses = [Progress() for _ in range(3)]
    await asyncio.gather(
        *(
            renderer.render(make_job(f"scene {n}"), tmp_path / f"{n}.mp4", progress.report)
            for n, progress in enumerate(progresses)
        )
    )
    for n, progress in enumerate(progresses):
        progress.check()
        assert probe(tmp_path / f"{n}.mp4").frames == FPS


@pytest.mark.slow
@pytest.mark.parametrize(("marker", "error"), MARKERS)
async def test_markers_raise_their_class_through_the_pool(
    renderer: PreviewRenderer, tmp_path: Path, marker: str, error: type[RenderError]
) -> None:
    out, progress = tmp_path / "out.mp4", Progress()
    with pytest.raises(error) as raised:
        await renderer.render(make_job(marker), out, progress.report)
    assert type(raised.value) is error
    assert raised.value.message.endswith(f"({marker})")
    assert progress.values and max(progress.values) < 50
    assert not out.exists()


@pytest.mark.slow
async def test_an_undecodable_image_is_rejected_through_the_pool(
    renderer: PreviewRenderer, tmp_path: Path
) -> None:
    with pytest.raises(RenderRejected, match="could not be decoded"):
        await renderer.render(make_job(image=b"GIF89a"), tmp_path / "out.mp4", Progress().report)


@pytest.mark.slow
async def test_a_dead_child_fails_its_render_and_the_pool_recovers(tmp_path: Path) -> None:
    before = set(multiprocessing.active_children())
    own = PreviewRenderer(processes=1, delays={"slow": 30.0}, nice=5)
    try:
        progress = Progress()
        render = asyncio.create_task(
            own.render(make_job(model="slow"), tmp_path / "a.mp4", progress.report)
        )
        await asyncio.wait_for(progress.first.wait(), 30)
        children = set(multiprocessing.active_children()) - before
        assert len(children) == 1
        (child,) = children
        assert child.pid is not None
        expected = min(19, os.getpriority(os.PRIO_PROCESS, 0) + 5)
        assert os.getpriority(os.PRIO_PROCESS, child.pid) == expected
        os.kill(child.pid, signal.SIGKILL)
        with pytest.raises(RenderError) as raised:
            await asyncio.wait_for(render, 30)
        assert type(raised.value) is RenderError
        await own.render(make_job(), tmp_path / "b.mp4", Progress().report)
        assert probe(tmp_path / "b.mp4").frames == FPS
    finally:
        await own.close()


@pytest.mark.slow
async def test_a_cancelled_render_leaves_no_file(tmp_path: Path) -> None:
    own, out, progress = PreviewRenderer(delays={"*": 1.0}), tmp_path / "out.mp4", Progress()
    render = asyncio.create_task(own.render(make_job(), out, progress.report))
    await asyncio.wait_for(progress.first.wait(), 30)
    render.cancel()
    with pytest.raises(asyncio.CancelledError):
        await render
    seen = len(progress.values)
    await own.close()  # lets the running child finish
    assert not out.exists()
    assert len(progress.values) == seen


async def test_the_instant_renderer_writes_a_tiny_mp4(tmp_path: Path) -> None:
    out, progress = tmp_path / "out.mp4", Progress()
    instant = InstantRenderer()
    await instant.render(make_job(size=(1280, 720)), out, progress.report)
    await instant.close()
    video = probe(out)
    assert (video.codec, video.pix_fmt, video.width, video.height) == ("h264", "yuv420p", 64, 64)
    assert video.frames == 1
    assert progress.values == [99]


@pytest.mark.parametrize(("marker", "error"), MARKERS)
async def test_the_instant_renderer_honours_the_markers(
    tmp_path: Path, marker: str, error: type[RenderError]
) -> None:
    with pytest.raises(error):
        await InstantRenderer().render(make_job(marker), tmp_path / "out.mp4", Progress().report)
