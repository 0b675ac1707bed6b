"""The diffusers renderer alone: progress, a lost lease, weights that do not load, CUDA."""

from __future__ import annotations

import asyncio
from pathlib import Path

import av
import pytest
import torch

from reelgate.config import LocalModelConfig
from reelgate.domain.errors import LeaseLost, RenderError
from reelgate.ports import RenderJob
from reelgate.renderers.diffusers import MODEL_LOAD_FAILED, DiffusersRenderer
from tests.gpu.conftest import AREA, SLOW, Folders, Steps


def model(folder: Path, **options: object) -> LocalModelConfig:
    base = {
        "pipeline": "wan",
        "weights": folder,
        "device": "cpu",
        "dtype": "float32",
        "steps": 6,
        "fps": 8,
        "max_sequence_length": 16,
        "max_area": AREA,
    }
    return LocalModelConfig.model_validate(base | options)


def job(prompt: str = "a cat", task_id: str = "task_1") -> RenderJob:
    return RenderJob(task_id, "wan", prompt, 1, 854, 480, 24)


async def test_progress_rises_to_99(folders: Folders, tmp_path: Path) -> None:
    renderer = DiffusersRenderer({"wan": model(folders.wan)})
    seen: list[int] = []

    async def progress(value: int) -> None:
        seen.append(value)

    await renderer.render(job(), tmp_path / "out.mp4", progress)
    assert seen == sorted(seen) and seen[0] == 0 and seen[-1] == 99
    assert 90 in seen  # the last denoising step
    with av.open(str(tmp_path / "out.mp4")) as container:
        assert container.streams.video[0].frames == 9


async def test_a_lost_lease_stops_the_render(folders: Folders, tmp_path: Path) -> None:
    steps = Steps()
    renderer = DiffusersRenderer({"wan": model(folders.wan)}, step_hook=steps)

    async def progress(value: int) -> None:
        if value > 0:
            raise LeaseLost("another worker holds the task now")

    with pytest.raises(LeaseLost):
        await renderer.render(job(f"slow {SLOW}"), tmp_path / "out.mp4", progress)
    assert max(steps.seen["task_1"]) < 5  # stopped at a step, not at the end
    assert not (tmp_path / "out.mp4").exists()


async def test_cancel_waits_for_the_device(folders: Folders, tmp_path: Path) -> None:
    steps = Steps()
    renderer = DiffusersRenderer({"wan": model(folders.wan)}, step_hook=steps)

    async def progress(value: int) -> None:
        return None

    render = asyncio.create_task(renderer.render(job(f"{SLOW}"), tmp_path / "a.mp4", progress))
    await asyncio.to_thread(steps.wait_started, "task_1")
    render.cancel()
    with pytest.raises(asyncio.CancelledError):
        await render
    count = len(steps.seen["task_1"])
    await renderer.render(job(task_id="task_2"), tmp_path / "b.mp4", progress)
    assert len(steps.seen["task_1"]) == count  # the cancelled render made no more steps
    assert not (tmp_path / "a.mp4").exists() and (tmp_path / "b.mp4").exists()


async def test_weights_that_do_not_load(tmp_path: Path) -> None:
    renderer = DiffusersRenderer({"wan": model(tmp_path / "nothing")})
    with pytest.raises(RenderError) as caught:
        await renderer.warm()
    assert caught.value.code == MODEL_LOAD_FAILED
    assert str(tmp_path) not in caught.value.message  # the path is in the notes only


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
async def test_renders_on_cuda_in_bfloat16(folders: Folders, tmp_path: Path) -> None:
    renderer = DiffusersRenderer({"wan": model(folders.wan, device="cuda", dtype="bfloat16")})

    async def progress(value: int) -> None:
        return None

    await renderer.render(job(), tmp_path / "out.mp4", progress)
    with av.open(str(tmp_path / "out.mp4")) as container:
        assert container.streams.video[0].frames == 9
    await renderer.close()
