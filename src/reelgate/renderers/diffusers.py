"""The GPU renderer: open video models (Wan 2.1, Wan 2.2 TI2V, LTX-Video) through diffusers.

Each configured local model (``[local_models."ID"]``, ``reelgate.config``) is loaded
once per process from its diffusers folder and kept warm. A render runs in a thread so
that the event loop keeps heartbeating the lease:

1. the request is mapped to a shape the model takes (``reelgate.renderers.shapes``);
2. the pipeline denoises; its ``callback_on_step_end`` reports progress (0..90 %) and
   raises ``_Stopped`` once the render is to stop (its task was cancelled, its lease
   lost, the worker shuts down). Raising, unlike ``pipe._interrupt``, skips the VAE
   decode, so a render stops within one step;
3. the frames are encoded with the preview renderer's encoder (``open_mp4``), 93..99 %.

One render per device at a time (``[gpu] renders_per_device``): a video model fills a
GPU. Failures, as the worker sees them (``reelgate.renderers``):

- CUDA out of memory: ``RenderError`` code ``gpu_out_of_memory``, the task ends ERROR at
  once (not retried: the same request on the same device runs out again; lower the
  model's limits or turn on the memory options). Memory is freed for the next task.
- the weights cannot be loaded: ``RenderError`` code ``model_load_failed``;
- an undecodable input image: ``RenderRejected``;
- the video cannot be written: ``Unavailable`` (retried, as for the preview renderer).

torch and diffusers are imported here only when a model loads: the base install never
needs them (``require_gpu_extra`` checks the extra at start-up).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import hashlib
import importlib.util
import io
import logging
import threading
import warnings
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import av
import numpy as np

from reelgate.config import PIPELINES, ConfigError, LocalModelConfig
from reelgate.domain.errors import RenderError, RenderRejected, Unavailable
from reelgate.ports import ProgressFn, RenderJob
from reelgate.renderers.preview import open_mp4
from reelgate.renderers.shapes import Shape, fit

log = logging.getLogger("reelgate.worker")

GPU_OUT_OF_MEMORY = "gpu_out_of_memory"
MODEL_LOAD_FAILED = "model_load_failed"
INSTALL_HINT = "pip install 'reelgate[gpu]'"
GPU_MODULES = ("torch", "diffusers", "transformers", "accelerate")
DENOISED = 90  # progress once the last step ends
DECODED = 93  # progress once the pipeline returned its frames
StepHook = Callable[[RenderJob, int], None]


def require_gpu_extra() -> None:
    """Raise ``ConfigError`` naming the install command unless the ``gpu`` extra is in."""
    missing = [name for name in GPU_MODULES if importlib.util.find_spec(name) is None]
    if missing:
        raise ConfigError(
            f"local models (diffusers) need {', '.join(missing)}, which are not installed: "
            f"{INSTALL_HINT}"
        )


class _Stopped(Exception):
    """Raised from the step callback: the render is to stop (cancel, lost lease, shutdown)."""


class DiffusersRenderer:
    """The ``Renderer`` of local models: one warm pipeline per model, one render per device.

    ``device`` (``worker --device``) replaces every model's own device. ``step_hook`` is
    called in the render thread before each step's progress, with the job and the step
    index: an instrumentation seam (the tests slow renders and raise faults with it).
    """

    name = "diffusers"

    def __init__(
        self,
        models: Mapping[str, LocalModelConfig],
        *,
        device: str = "",
        renders_per_device: int = 1,
        step_hook: StepHook | None = None,
    ) -> None:
        self._models = dict(models)
        self._device = device
        self._per_device = renders_per_device
        self._step_hook = step_hook
        self._slots: dict[str, asyncio.Semaphore] = {}
        self._pipes: dict[str, tuple[Any, Any]] = {}  # model -> (pipeline, image pipeline)
        self._loading = threading.Lock()

    def device(self, model: str) -> str:
        """The device ``model`` renders on."""
        return self._device or self._models[model].device

    def shape(self, job: RenderJob) -> Shape:
        """What ``job``'s model renders for it (docs/gpu.md, "Sizes and lengths")."""
        config = self._models[job.model]
        multiple, step, _ = PIPELINES[config.pipeline]
        return fit(
            job.width,
            job.height,
            job.seconds,
            fps=config.frame_rate,
            multiple=multiple,
            frame_step=step,
            max_frames=config.max_frames,
            max_area=config.max_area,
        )

    async def warm(self, models: Iterable[str] | None = None) -> None:
        """Load ``models`` (default: all) now rather than at their first render.

        Raises ``RenderError`` code ``model_load_failed`` for one that cannot load.
        """
        for model in self._models if models is None else models:
            if model in self._models:
                await asyncio.to_thread(self._pipelines, model)

    async def render(self, job: RenderJob, out_path: Path, progress: ProgressFn) -> None:
        """Render ``job`` into ``out_path`` on its model's device, relaying progress.

        Cancelling this coroutine, or a ``progress`` that raises (a lost lease), stops
        the render at its next step; the file is deleted and the cancel (or the error)
        re-raised once the render thread has let go of the device.
        """
        config = self._models[job.model]
        if job.image is not None and not config.image_input:
            raise RenderRejected(f"model {job.model} takes no input image")
        shape = self.shape(job)
        slots = self._slots.setdefault(self.device(job.model), asyncio.Semaphore(self._per_device))
        await slots.acquire()
        loop = asyncio.get_running_loop()
        stop = threading.Event()
        values: asyncio.Queue[int | None] = asyncio.Queue()

        def report(value: int) -> None:
            loop.call_soon_threadsafe(values.put_nowait, value)

        async def relay() -> None:
            while (value := await values.get()) is not None:
                try:
                    await progress(value)
                except BaseException:
                    stop.set()
                    raise

        work = asyncio.ensure_future(
            asyncio.to_thread(self._render, job, shape, out_path, report, stop)
        )
        work.add_done_callback(lambda _: slots.release())  # the device is free only then
        relaying = asyncio.create_task(relay())
        try:
            await asyncio.wait({work, relaying}, return_when=asyncio.FIRST_COMPLETED)
            if relaying.done():  # progress raised (a lost lease): stop the render, raise that
                await _settle(work)
                relaying.result()
            await work  # raises the render's own error
            values.put_nowait(None)
            await relaying
        except BaseException:
            stop.set()
            relaying.cancel()
            await _settle(work)
            out_path.unlink(missing_ok=True)
            raise

    async def close(self) -> None:
        """Drop the pipelines and free their memory (a later render loads them again)."""
        self._pipes.clear()
        await asyncio.to_thread(_free_memory)

    # in the render thread --------------------------------------------------------

    def _pipelines(self, model: str) -> tuple[Any, Any]:
        with self._loading:
            if model not in self._pipes:
                self._pipes[model] = _load(model, self._models[model], self.device(model))
            return self._pipes[model]

    def _render(
        self,
        job: RenderJob,
        shape: Shape,
        out_path: Path,
        report: Callable[[int], None],
        stop: threading.Event,
    ) -> None:
        import torch

        config = self._models[job.model]
        pipe, image_pipe = self._pipelines(job.model)
        hook = self._step_hook

        def on_step(
            _pipe: Any, step: int, _timestep: Any, _tensors: dict[str, Any]
        ) -> dict[str, Any]:
            if hook is not None:
                hook(job, step)
            if stop.is_set():
                raise _Stopped
            report((step + 1) * DENOISED // config.steps)
            return {}

        arguments = _arguments(job, config, shape, self.device(job.model), on_step)
        if job.image is not None:
            arguments["image"] = _picture(job.image, shape)
            pipe = image_pipe
        report(0)
        out_of_memory = False
        try:
            with torch.inference_mode():
                frames = pipe(**arguments).frames[0]
        except _Stopped:
            log.info("task %s: render stopped at a denoising step", job.task_id)
            raise
        except torch.cuda.OutOfMemoryError:
            out_of_memory = True  # handled below, once the traceback lets go of the tensors
        except Exception as exc:
            error = RenderError(f"the {config.pipeline} pipeline failed")
            error.add_note(f"pipeline: {exc!r}")
            raise error from exc
        if out_of_memory:
            _free_memory()
            raise RenderError(
                f"the GPU ran out of memory rendering {shape.width}x{shape.height}, "
                f"{shape.frames} frames with model {job.model}",
                code=GPU_OUT_OF_MEMORY,
            )
        report(DECODED)
        _encode(frames, shape, out_path, report, stop)


def _load(model: str, config: LocalModelConfig, device: str) -> tuple[Any, Any]:
    """The pipeline (and the image pipeline, if any) of ``model``, on ``device``."""
    import diffusers
    import torch

    folder = config.weights
    try:
        if not (folder / "model_index.json").is_file():
            raise FileNotFoundError(f"{folder} has no model_index.json (not a diffusers folder)")
        if config.cpu_offload and not (device.startswith("cuda") and torch.cuda.is_available()):
            raise RuntimeError(f"cpu_offload needs a CUDA device, not {device}")
        kind: Any = diffusers.LTXPipeline if config.pipeline == "ltx" else diffusers.WanPipeline
        dtypes = {"default": getattr(torch, config.dtype)}
        if config.pipeline != "ltx":
            dtypes["vae"] = torch.float32  # Wan's VAE decodes badly in half precision
        with warnings.catch_warnings():
            # ``torch_dtype`` is the name every diffusers in our range knows; 0.42 and
            # newer call it ``dtype`` and warn about the old name.
            warnings.filterwarnings("ignore", "`torch_dtype` is deprecated", FutureWarning)
            pipe = kind.from_pretrained(folder, torch_dtype=dtypes, local_files_only=True)
        if config.cpu_offload:
            pipe.enable_model_cpu_offload(device=device)
        else:
            pipe.to(device)
        if config.vae_tiling:
            pipe.vae.enable_tiling()
        if config.attention_backend:
            pipe.transformer.set_attention_backend(config.attention_backend)
        if config.compile:
            pipe.transformer.compile()
        pipe.set_progress_bar_config(disable=True)
        image_pipe = None
        if config.image_input:
            image_kind = (
                diffusers.LTXImageToVideoPipeline
                if config.pipeline == "ltx"
                else diffusers.WanImageToVideoPipeline
            )
            image_pipe = image_kind.from_pipe(pipe)
            image_pipe.set_progress_bar_config(disable=True)
    except Exception as exc:
        error = RenderError(f"model {model} could not be loaded", code=MODEL_LOAD_FAILED)
        error.add_note(f"{config.pipeline} from {folder} on {device}: {exc!r}")
        raise error from exc
    log.info("model %s loaded (%s on %s, %s)", model, config.pipeline, device, config.dtype)
    return pipe, image_pipe


def _arguments(
    job: RenderJob,
    config: LocalModelConfig,
    shape: Shape,
    device: str,
    on_step: Callable[..., dict[str, Any]],
) -> dict[str, Any]:
    """The pipeline's keyword arguments for ``job``; the seed comes from the task id."""
    import torch

    seed = int.from_bytes(hashlib.sha256(job.task_id.encode()).digest()[:4], "big")
    ltx = config.pipeline == "ltx"
    arguments: dict[str, Any] = {
        "prompt": job.prompt,
        "negative_prompt": config.negative_prompt or None,
        "width": shape.width,
        "height": shape.height,
        "num_frames": shape.frames,
        "num_inference_steps": config.steps,
        "guidance_scale": config.guidance,
        "max_sequence_length": config.max_sequence_length or (128 if ltx else 512),
        "generator": torch.Generator(device="cpu" if config.cpu_offload else device).manual_seed(
            seed
        ),
        "output_type": "np",
        "callback_on_step_end": on_step,
    }
    if ltx:
        arguments["frame_rate"] = shape.fps
    return arguments


def _picture(image: bytes, shape: Shape) -> Any:
    """The input image, cropped to the video's aspect ratio and scaled to its size."""
    from PIL import Image, ImageOps

    try:
        with Image.open(io.BytesIO(image)) as opened:
            picture = opened.convert("RGB")
    except Exception as exc:
        raise RenderRejected("the input image could not be decoded") from exc
    return ImageOps.fit(picture, (shape.width, shape.height))


def _encode(
    frames: Any, shape: Shape, out_path: Path, report: Callable[[int], None], stop: threading.Event
) -> None:
    """Encode frames (floats in [0, 1], frames x height x width x 3) to H.264 MP4."""
    pictures = np.clip(np.asarray(frames) * 255.0 + 0.5, 0, 255).astype(np.uint8)
    total = len(pictures)
    try:
        with open_mp4(out_path, width=shape.width, height=shape.height, fps=shape.fps) as (
            container,
            stream,
        ):
            for index, picture in enumerate(pictures):
                if stop.is_set():
                    raise _Stopped
                frame = av.VideoFrame.from_ndarray(picture, format="rgb24").reformat(
                    format="yuv420p"
                )
                frame.pts = index
                container.mux(stream.encode(frame))
                report(DECODED + (index + 1) * (99 - DECODED) // total)
    except OSError as exc:
        out_path.unlink(missing_ok=True)
        raise Unavailable(f"the diffusers renderer could not write {out_path}: {exc}") from exc
    except av.error.FFmpegError as exc:
        out_path.unlink(missing_ok=True)
        error = RenderError("the diffusers renderer could not encode the video")
        error.add_note(f"encoder: {exc}")
        raise error from exc


def _free_memory() -> None:
    """Give the memory of a failed render back (to the next task on this device)."""
    gc.collect()
    if importlib.util.find_spec("torch") is not None:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()


async def _settle(work: asyncio.Future[None]) -> None:
    """Wait for the render thread to end (it stops at its next step); its error is moot."""
    with contextlib.suppress(BaseException):
        await asyncio.shield(work)
