"""Thumbnails: the middle frame of a real MP4 as a JPEG, and nothing for a broken file."""

from __future__ import annotations

import io
from pathlib import Path

import av
import numpy as np
from PIL import Image

from reelgate.blobs.memory import MemoryBlobs
from reelgate.ports import RenderJob
from reelgate.renderers.preview import render_preview
from reelgate.renderers.thumbnail import store_thumbnail, thumbnail_jpeg


def frames_of(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]


def test_the_middle_frame_at_the_videos_size(tmp_path: Path) -> None:
    video = tmp_path / "fox.mp4"
    job = RenderJob("task_t", "m", "a fox in the snow", 2, 480, 854, 24)
    render_preview(job, video, lambda _: None)
    image = Image.open(io.BytesIO(thumbnail_jpeg(video)))
    assert image.format == "JPEG" and image.size == (480, 854)
    frames = frames_of(video)
    picture = np.asarray(image.convert("RGB"), dtype=np.int16)
    distance = [float(np.abs(picture - frame.astype(np.int16)).mean()) for frame in frames]
    assert abs(int(np.argmin(distance)) - len(frames) // 2) <= 1  # the middle, give or take


async def test_a_broken_video_gets_no_thumbnail(tmp_path: Path) -> None:
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"not a video" * 100)
    blobs = MemoryBlobs()
    assert not await store_thumbnail(blobs, "thumbnails/x.1.jpg", broken)
    assert not await blobs.exists("thumbnails/x.1.jpg")
    good = tmp_path / "good.mp4"
    render_preview(RenderJob("task_g", "m", "a gull", 1, 854, 480, 24), good, lambda _: None)
    assert await store_thumbnail(blobs, "thumbnails/g.1.jpg", good)
    jpeg = await blobs.get_bytes("thumbnails/g.1.jpg")
    assert Image.open(io.BytesIO(jpeg)).size == (854, 480)
