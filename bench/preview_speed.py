"""How fast the preview renderer is, on one core, against encoding alone.

For 480p, 720p and 1080p (16:9) videos of 5 s at 24 fps, text-to-video and
image-to-video, it prints the wall time of ``render_preview`` (drawing and encoding)
and of encoding the same frames made beforehand with the same encoder settings, in two
forms: yuv420p ``VideoFrame`` objects (encoding only) and rgb24 ndarrays (conversion
and encoding, the usual way to feed PyAV), with the ratios. Each time is the best of
``--repeat`` runs. Run: ``.venv/bin/python bench/preview_speed.py``.
"""

from __future__ import annotations

import argparse
import io
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import av
import numpy as np
from PIL import Image

from reelgate.domain.catalog import FPS
from reelgate.ports import RenderJob
from reelgate.renderers.frames import make_scene
from reelgate.renderers.preview import open_mp4, render_preview

SIZES = {"480p": (854, 480), "720p": (1280, 720), "1080p": (1920, 1080)}
PROMPT = "A corgi surfing a huge wave at sunset, cinematic lighting, 35mm film, slow motion"


def best_of(repeat: int, run: Callable[[], None]) -> float:
    """The shortest wall time of ``repeat`` runs, in seconds."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)


def encode(out: Path, width: int, height: int, frames: list[av.VideoFrame]) -> None:
    """Encode ready-made frames as the preview renderer does."""
    with open_mp4(out, width=width, height=height, fps=FPS) as (container, stream):
        for frame in frames:
            container.mux(stream.encode(frame))


def encode_rgb(out: Path, width: int, height: int, arrays: list[np.ndarray]) -> None:
    """Encode ready-made rgb24 arrays (PyAV converts them to yuv420p)."""
    with open_mp4(out, width=width, height=height, fps=FPS) as (container, stream):
        for index, array in enumerate(arrays):
            frame = av.VideoFrame.from_ndarray(array, format="rgb24")
            frame.pts = index
            container.mux(stream.encode(frame))


def test_image(width: int, height: int) -> bytes:
    """A JPEG a little larger than the frame: a colour ramp with mild grain, like a photo."""
    rng = np.random.default_rng(7)
    ramp = np.linspace(30, 220, width + 64, dtype=np.float32)[None, :, None]
    tint = np.array([1.0, 0.8, 0.6], dtype=np.float32)
    pixels = np.clip(ramp * tint + rng.normal(0, 8, (height + 64, width + 64, 3)), 0, 255)
    buffer = io.BytesIO()
    Image.fromarray(pixels.astype(np.uint8)).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def measure(
    out: Path, width: int, height: int, seconds: int, image: bytes | None, repeat: int
) -> tuple[float, float, float]:
    """Seconds to render, to encode made frames, and to encode made rgb24 arrays."""
    total = seconds * FPS
    job = RenderJob("bench", "bench", PROMPT, seconds, width, height, FPS, image)
    rendered = best_of(repeat, lambda: render_preview(job, out, lambda _: None))
    scene = make_scene(PROMPT, width=width, height=height, fps=FPS, frames=total, image=image)
    frames = [scene.frame(index) for index in range(total)]
    for index, frame in enumerate(frames):
        frame.pts = index
    encoded = best_of(repeat, lambda: encode(out, width, height, frames))
    arrays = [frame.to_ndarray(format="rgb24") for frame in frames]
    frames.clear()  # free them before the next run
    return rendered, encoded, best_of(repeat, lambda: encode_rgb(out, width, height, arrays))


def main() -> None:
    """Measure and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    seconds = args.seconds
    print(f"{seconds} s at {FPS} fps ({seconds * FPS} frames), one core, best of {args.repeat}")
    print(f"{'video':<12}{'render':>9}{'x real':>8}{'encode':>9}{'ratio':>7}", end="")
    print(f"{'rgb enc':>9}{'ratio':>7}")
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "out.mp4"
        for label, (width, height) in SIZES.items():
            for kind in ("text", "image"):
                image = test_image(width, height) if kind == "image" else None
                rendered, encoded, rgb = measure(out, width, height, seconds, image, args.repeat)
                print(
                    f"{label + ' ' + kind:<12}{rendered:>8.2f}s{seconds / rendered:>7.1f}x"
                    f"{encoded:>8.2f}s{rendered / encoded:>7.2f}{rgb:>8.2f}s{rendered / rgb:>7.2f}"
                )


if __name__ == "__main__":
    main()
