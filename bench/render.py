"""#6: the preview renderer on one core, against PyAV encoding ready-made frames.

For 480p, 720p and 1080p (16:9) videos of 5 s at 24 fps, text-to-video and
image-to-video, it times ``render_preview`` (drawing and encoding, as a render job
does it) and, as the baseline, encoding the very same frames made beforehand, as
yuv420p ``VideoFrame`` objects, through the product's own ``open_mp4`` (the same
libx264 options, one encoder thread, faststart): the pure encode cost. With
``--rgb`` it also times encoding the frames as rgb24 arrays, the usual way to feed
PyAV (conversion included), for the notes.

Targets: 720p faster than real time (realtime factor = video seconds / render
seconds > 1); the render at most 1.5 times the encode-only time at every size.
The process pins itself to one core first; each time is the best of ``--repeat``.

Run alone: ``python -m bench.render [--quick] [--repeat N]``.
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

from bench import options
from bench.report import Row
from bench.seed import PROMPT
from reelgate.domain.catalog import FPS, frame_size
from reelgate.ports import RenderJob
from reelgate.renderers.frames import make_scene
from reelgate.renderers.preview import open_mp4, render_preview

RESOLUTIONS = ("480p", "720p", "1080p")
KINDS = ("text", "image")
TARGET = "≤ 1.5x encode"
TARGET_720P = "≤ 1.5x encode, > 1x real time"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """This benchmark's own options."""
    parser.add_argument("--video-seconds", type=int, default=None, help="video length [5]")
    parser.add_argument("--repeat", type=int, default=None, help="best of N [2, quick 1]")
    parser.add_argument("--resolutions", default=",".join(RESOLUTIONS), help="comma-separated")
    parser.add_argument("--rgb", action="store_true", help="also time rgb24 array encoding")


def measure(args: argparse.Namespace) -> list[Row]:
    """Time render and encode for each resolution and kind, on one core."""
    video_seconds = args.video_seconds or (1 if args.quick else 5)
    repeat = args.repeat or (1 if args.quick else 2)
    resolutions = ["480p"] if args.quick else args.resolutions.split(",")
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {max(os.sched_getaffinity(0))})
    rows = []
    with tempfile.TemporaryDirectory(prefix="reelgate-bench-") as folder:
        out = Path(folder) / "out.mp4"
        for resolution in resolutions:
            width, height = frame_size("16:9", resolution)
            for kind in KINDS:
                image = test_image(width, height) if kind == "image" else None
                times = _times(out, width, height, video_seconds, image, repeat, args.rgb)
                rows.append(_row(resolution, kind, video_seconds, repeat, times))
    return rows


def _row(
    resolution: str, kind: str, video_seconds: int, repeat: int, times: dict[str, float]
) -> Row:
    render, encode = times["render"], times["encode"]
    ratio, realtime = render / encode, video_seconds / render
    holds = ratio <= 1.5 and (realtime > 1 or resolution != "720p")
    notes = (
        f"{resolution} {kind}-to-video, {video_seconds} s ({video_seconds * FPS} frames), "
        f"one core, best of {repeat}: render {render:.2f} s ({realtime:.1f}x real time), "
        f"encode-only {encode:.2f} s"
    )
    if "rgb" in times:
        notes += f", rgb24 arrays encoded {times['rgb']:.2f} s ({render / times['rgb']:.2f}x)"
    return Row(
        f"6 {resolution} {kind}",
        f"preview renderer, {resolution} {kind}-to-video, {video_seconds} s",
        f"{render:.2f} s ({realtime:.1f}x real time)",
        f"{encode:.2f} s (encode only)",
        ratio,
        TARGET_720P if resolution == "720p" else TARGET,
        holds,
        notes + ".",
        {"render_s": render, "encode_s": encode, "realtime": realtime},
    )


def _times(
    out: Path, width: int, height: int, seconds: int, image: bytes | None, repeat: int, rgb: bool
) -> dict[str, float]:
    """Best seconds to render, to encode the made frames, and (``rgb``) rgb24 arrays."""
    total = seconds * FPS
    job = RenderJob("bench", "bench", PROMPT, seconds, width, height, FPS, image)
    times = {"render": best_of(repeat, lambda: render_preview(job, out, lambda _: None))}
    scene = make_scene(PROMPT, width=width, height=height, fps=FPS, frames=total, image=image)
    frames = [scene.frame(index) for index in range(total)]
    for index, frame in enumerate(frames):
        frame.pts = index
    times["encode"] = best_of(repeat, lambda: encode(out, width, height, frames))
    if rgb:
        arrays = [frame.to_ndarray(format="rgb24") for frame in frames]
        frames.clear()  # free them before the next run
        times["rgb"] = best_of(repeat, lambda: encode_rgb(out, width, height, arrays))
    return times


def best_of(repeat: int, run: Callable[[], None]) -> float:
    """The shortest wall time of ``repeat`` runs, in seconds."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)


def encode(out: Path, width: int, height: int, frames: list[av.VideoFrame]) -> None:
    """Encode ready-made yuv420p frames as the preview renderer does."""
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


def main() -> None:
    """Run #6 and report it."""
    options.main(__doc__, measure, add_arguments)


if __name__ == "__main__":
    main()
