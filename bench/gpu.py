"""#15: the GPU worker (diffusers) end to end, against a plain diffusers script.

The full-size Wan 2.1 T2V 1.3B architecture with random weights (speed does not depend
on weight values; nothing is downloaded): its transformer (30 layers, 12 heads of 128,
FFN 8960) and VAE as released; the text encoder is a 2-layer T5 of the real width
(4096), since the prompt is encoded once per render. One render: 832x480 (the request
maps to 848x480), 81 frames, ``--steps`` denoising steps, guidance 5.

- figure: reelgate's path: HTTP create on a real server on loopback, its worker's
  ``DiffusersRenderer`` (loaded and warmed first), MP4 stored, task SUCCESS; seconds
  from create to SUCCESS.
- baseline: the same pipeline in one process, ``pipe(...)`` then the same H.264 encode;
  same size, frames, steps.

Target: the worker's throughput at least 0.95 of the plain script's. It also reports
the gain of each option (VAE tiling, an attention backend, torch.compile) on the plain
pipeline, and the peak GPU memory of each. Without a CUDA device it reports
"not measured: no CUDA device" and exits 0.

Run alone on a GPU machine (about 5 minutes on one H200 with the default 10 steps):
``HF_HUB_OFFLINE=1 .venv/bin/python -m bench.gpu --json bench/out/gpu.json``.
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from bench import options
from bench.report import Row

NUMBER = "15"
PATH = "GPU worker (diffusers), Wan 2.1 1.3B, 832x480, 81 frames"
TARGET = "≥ 0.95x plain diffusers"
PROMPT = "a cat runs on the beach at sunset, slow camera pan"
MODEL = "wan-2.1-t2v-1.3b"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--steps", type=int, default=10, help="denoising steps [10, quick 2]")
    parser.add_argument("--no-options", action="store_true", help="skip the options' runs")
    parser.add_argument(
        "--attention", default="_native_cudnn", help="attention backend to try [_native_cudnn]"
    )


def measure(args: argparse.Namespace) -> list[Row]:
    """The worker's path and the plain script's, then each option; or a 'not measured' row."""
    if not _cuda():
        return [Row(NUMBER, PATH, "not measured: no CUDA device", "—", None, TARGET, None)]
    import torch

    steps = 2 if args.quick and args.steps == 10 else args.steps
    with tempfile.TemporaryDirectory(prefix="reelgate-bench-gpu-") as folder:
        weights = _build_weights(Path(folder) / "wan")
        plain, plain_peak = _plain(weights, steps)
        worker = _worker(weights, Path(folder), steps)
        rows = [
            Row(
                NUMBER,
                PATH,
                f"{worker:.1f} s per video (worker, HTTP create to SUCCESS)",
                f"{plain:.1f} s (plain diffusers + encode)",
                plain / worker,
                TARGET,
                plain / worker >= 0.95,
                f"{steps} steps, bf16 transformer, fp32 VAE, {torch.cuda.get_device_name()}; "
                f"peak GPU memory {plain_peak / 2**30:.1f} GiB.",
                {"worker_s": worker, "plain_s": plain, "peak_gib": plain_peak / 2**30},
            )
        ]
        if not args.no_options:
            for name, change in _options(args.attention).items():
                seconds, peak = _plain(weights, steps, change)
                rows.append(
                    Row(
                        f"{NUMBER} {name}",
                        f"plain diffusers with {name}",
                        f"{seconds:.1f} s, peak {peak / 2**30:.1f} GiB",
                        f"{plain:.1f} s, peak {plain_peak / 2**30:.1f} GiB",
                        plain / seconds,
                        "(a gain above 1)",
                        None,
                        f"the option's speed-up over the plain pipeline; {steps} steps.",
                        {"seconds": seconds, "peak_gib": peak / 2**30},
                    )
                )
    return rows


def _cuda() -> bool:
    if importlib.util.find_spec("torch") is None:
        return False
    import torch

    return bool(torch.cuda.is_available())


def _build_weights(folder: Path) -> Path:
    """The random-weight full-size pipeline, saved as a diffusers folder."""
    import torch
    from diffusers import (
        AutoencoderKLWan,
        UniPCMultistepScheduler,
        WanPipeline,
        WanTransformer3DModel,
    )
    from tests.gpu.tiny import tokenizer
    from transformers import T5Config, T5EncoderModel

    torch.manual_seed(0)
    with torch.device("cuda"):
        transformer = WanTransformer3DModel(
            patch_size=(1, 2, 2),
            num_attention_heads=12,
            attention_head_dim=128,
            in_channels=16,
            out_channels=16,
            text_dim=4096,
            freq_dim=256,
            ffn_dim=8960,
            num_layers=30,
            cross_attn_norm=True,
            qk_norm="rms_norm_across_heads",
            eps=1e-6,
            rope_max_seq_len=1024,
        ).to(torch.bfloat16)
        text = T5EncoderModel(
            T5Config(vocab_size=64, d_model=4096, d_kv=64, d_ff=10240, num_layers=2, num_heads=64)
        ).to(torch.bfloat16)
        vae = AutoencoderKLWan()
    scheduler = UniPCMultistepScheduler(
        prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=3.0
    )
    pipe = WanPipeline(
        tokenizer=tokenizer(),
        text_encoder=text,
        vae=vae,
        scheduler=scheduler,
        transformer=transformer,
    )
    pipe.save_pretrained(folder)
    return folder


def _plain(
    weights: Path, steps: int, change: Callable[[Any], None] | None = None
) -> tuple[float, int]:
    """Seconds of one render (after a warm-up render) and the peak GPU memory, in bytes."""
    import torch
    from diffusers import WanPipeline

    from reelgate.renderers.diffusers import _encode
    from reelgate.renderers.shapes import Shape

    gc.collect()  # the previous run's pipeline
    torch.cuda.empty_cache()
    pipe = WanPipeline.from_pretrained(
        weights, torch_dtype={"default": torch.bfloat16, "vae": torch.float32}
    ).to("cuda")
    pipe.set_progress_bar_config(disable=True)
    if change is not None:
        change(pipe)
    shape = Shape(848, 480, 81, 16)

    def run() -> None:
        frames = pipe(
            prompt=PROMPT,
            width=shape.width,
            height=shape.height,
            num_frames=shape.frames,
            num_inference_steps=steps,
            guidance_scale=5.0,
            output_type="np",
            generator=torch.Generator("cuda").manual_seed(0),
        ).frames[0]
        with tempfile.TemporaryDirectory() as out:
            _encode(frames, shape, Path(out) / "plain.mp4", lambda _: None, threading.Event())

    run()  # warm-up: kernels, compile
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    run()
    torch.cuda.synchronize()
    seconds = time.perf_counter() - started
    return seconds, torch.cuda.max_memory_allocated()


def _worker(weights: Path, folder: Path, steps: int) -> float:
    """Seconds from an HTTP create to SUCCESS on a real server whose worker has the model."""
    from tests.server import start_server

    from reelgate.config import load_config
    from reelgate.renderers.diffusers import DiffusersRenderer

    config = folder / "reelgate.toml"
    config.write_text(
        f'[local_models."{MODEL}"]\npipeline = "wan"\nweights = "{weights}"\n'
        f"steps = {steps}\nguidance = 5.0\nmax_frames = 81\nmax_sequence_length = 512\n"
    )
    local = load_config(config).local_models
    renderer = DiffusersRenderer(local)
    server = start_server(
        folder / "data", renderers=dict.fromkeys(local, renderer), config=str(config), workers=1
    )
    try:
        server.call(renderer.warm())
        client = httpx.Client(base_url=server.base_url, headers=server.headers(), timeout=60)
        times = []
        for _ in range(2):  # the first render warms the kernels, as the plain one does
            started = time.perf_counter()
            body = {"prompt": PROMPT, "model": MODEL, "seconds": 5, "resolution": "480p"}
            task = client.post("/v1/videos", json=body).json()["id"]
            while (status := client.get(f"/v1/videos/{task}").json()["status"]) not in (
                "SUCCESS",
                "FAILED",
                "ERROR",
            ):
                time.sleep(0.05)
            if status != "SUCCESS":
                raise RuntimeError(f"the worker's render ended {status}")
            times.append(time.perf_counter() - started)
        return times[-1]
    finally:
        server.stop()


def _options(attention: str) -> dict[str, Callable[[Any], None]]:
    return {
        "vae tiling": lambda pipe: pipe.vae.enable_tiling(),
        f"attention {attention}": lambda pipe: pipe.transformer.set_attention_backend(attention),
        "torch.compile": lambda pipe: pipe.transformer.compile(),
    }


def main() -> None:
    """Run #15 and report it."""
    options.main(__doc__, measure, add_arguments)


if __name__ == "__main__":
    main()
