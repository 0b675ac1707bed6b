"""Tiny diffusers pipelines built once per session, and a server that serves them on CPU."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"  # nothing is downloaded: a hub call fails the test
torch = pytest.importorskip("torch", reason="the gpu extra is not installed")

from reelgate.config import load_config  # noqa: E402
from reelgate.ports import RenderJob  # noqa: E402
from reelgate.renderers.diffusers import DiffusersRenderer  # noqa: E402
from tests.gpu import tiny  # noqa: E402
from tests.server import LiveServer, start_server  # noqa: E402

SLOW = "[[slow]]"  # a prompt with it takes STEP_PAUSE seconds per denoising step
OOM = "[[oom]]"  # a prompt with it runs out of (simulated) GPU memory at step 1
STEP_PAUSE = 0.3
STEPS_TOTAL_SLOW = 4  # the steps of wan-2.1-t2v-1.3b below
AREA = 9000  # the tiny models render about this many pixels a frame (e.g. 112x64)


@dataclass(frozen=True)
class Folders:
    wan: Path
    wan_ti2v: Path
    ltx: Path


@dataclass
class Steps:
    """The step hook of the test server's renderer: records steps, plays faults."""

    seen: dict[str, list[int]] = field(default_factory=dict)
    started: dict[str, threading.Event] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, job: RenderJob, step: int) -> None:
        with self.lock:
            self.seen.setdefault(job.task_id, []).append(step)
            started = self.started.setdefault(job.task_id, threading.Event())
        started.set()
        if OOM in job.prompt and step == 1:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated by the test)")
        if SLOW in job.prompt:
            time.sleep(STEP_PAUSE)

    def wait_started(self, task_id: str, timeout: float = 60) -> None:
        with self.lock:
            started = self.started.setdefault(task_id, threading.Event())
        assert started.wait(timeout), f"task {task_id} never reached a denoising step"


@pytest.fixture(scope="session")
def folders(tmp_path_factory: pytest.TempPathFactory) -> Folders:
    """The three tiny pipelines, saved as diffusers folders (built once per session)."""
    root = tmp_path_factory.mktemp("weights")
    return Folders(
        tiny.wan_t2v(root / "wan-t2v"), tiny.wan_ti2v(root / "wan-ti2v"), tiny.ltx(root / "ltx")
    )


def config_text(folders: Folders) -> str:
    """A configuration file that serves the tiny pipelines on the CPU."""
    common = f'device = "cpu"\ndtype = "float32"\nmax_sequence_length = 16\nmax_area = {AREA}\n'
    return f"""
[local_models."wan-2.1-t2v-1.3b"]
pipeline = "wan"
weights = "{folders.wan}"
steps = 4
guidance = 5.0
fps = 8
resolutions = ["480p", "720p"]
min_seconds = 1
max_seconds = 4
{common}
[local_models."wan-2.2-ti2v-5b"]
pipeline = "wan-ti2v"
weights = "{folders.wan_ti2v}"
steps = 2
fps = 8
image_input = true
max_seconds = 2
{common}
[local_models."ltx-video"]
pipeline = "ltx"
weights = "{folders.ltx}"
steps = 2
guidance = 3.0
fps = 8
image_input = true
max_seconds = 2
{common}
"""


@pytest.fixture(scope="session")
def gpu_config(folders: Folders, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("config") / "reelgate.toml"
    path.write_text(config_text(folders))
    return path


@pytest.fixture(scope="session")
def steps() -> Steps:
    return Steps()


@pytest.fixture(scope="session")
def gpu_server(
    gpu_config: Path, steps: Steps, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    """A real server on loopback whose worker renders the tiny models on the CPU."""
    config = load_config(gpu_config)
    renderer = DiffusersRenderer(config.local_models, step_hook=steps)
    server = start_server(
        tmp_path_factory.mktemp("gpu-live"),
        renderers=dict.fromkeys(config.local_models, renderer),
        config=str(gpu_config),
        workers=2,
    )
    yield server
    server.stop()
