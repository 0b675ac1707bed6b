"""Small real MP4 clips for the fake upstreams: H.264, 24 fps, made once and cached."""

from __future__ import annotations

import functools
import io
import threading

import av
import numpy as np

from reelgate.renderers.preview import open_mp4

FPS = 24
HEIGHT = 36  # the short side; tiny, so that thousands of downloads stay cheap
_SIDES = {
    "21:9": (84, 36),
    "16:9": (64, 36),
    "4:3": (48, 36),
    "1:1": (36, 36),
    "3:4": (36, 48),
    "9:16": (36, 64),
}
_lock = threading.Lock()


def clip_size(ratio: str) -> tuple[int, int]:
    """The (width, height) of a fake clip of aspect ``ratio`` (16:9 for an unknown one)."""
    return _SIDES.get(ratio, _SIDES["16:9"])


def clip(seconds: int, ratio: str) -> bytes:
    """An MP4 of ``seconds`` at 24 fps in aspect ``ratio``; the same bytes every call.

    The first call for a (seconds, ratio) encodes it (some milliseconds); call it off the
    event loop (``asyncio.to_thread``) if that matters.
    """
    with _lock:  # one encode per key, even when many requests ask at once
        return _encode(max(1, seconds), ratio if ratio in _SIDES else "16:9")


@functools.cache
def _encode(seconds: int, ratio: str) -> bytes:
    width, height = _SIDES[ratio]
    buffer = io.BytesIO()
    frames = seconds * FPS
    chroma = np.full((height // 2, width), 128, np.uint8)
    ramp = np.linspace(16, 235, width, dtype=np.float32)
    with open_mp4(buffer, width=width, height=height, fps=FPS) as (container, stream):
        for index in range(frames):
            shift = (index * 7) % width
            luma = np.tile(np.roll(ramp, shift).astype(np.uint8), (height, 1))
            plane = np.concatenate([luma, chroma])
            frame = av.VideoFrame.from_ndarray(plane, format="yuv420p")
            frame.pts = index
            container.mux(stream.encode(frame))
    return buffer.getvalue()
