"""A video's thumbnail: a JPEG of its middle frame, at the video's own size.

Made once per finished video, for every backend (the local render loop and the re-host
of an upstream video call ``store_thumbnail``), and stored at ``thumbnail_key`` before
the video itself, so that a stored video always has its thumbnail.
"""

from __future__ import annotations

import asyncio
import io
import logging
from pathlib import Path

import av
from PIL import Image

from reelgate.ports import BlobStore

log = logging.getLogger("reelgate.worker")

QUALITY = 85


def thumbnail_jpeg(path: Path, *, quality: int = QUALITY) -> bytes:
    """The JPEG of the frame in the middle of the MP4 at ``path`` (the last one decoded
    when the file is shorter than its header says). Raises ``ValueError`` without frames."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        middle = _middle_time(container, stream)
        if middle > 0 and stream.time_base is not None:
            try:  # to the keyframe at or before the middle: less to decode
                container.seek(int(middle / stream.time_base), stream=stream, backward=True)
            except av.error.FFmpegError:
                container.seek(0, stream=stream)
        picked: av.VideoFrame | None = None
        for frame in container.decode(stream):
            picked = frame
            if frame.time is None or frame.time >= middle:
                break
        if picked is None:
            raise ValueError("the video has no frames")
        image = Image.fromarray(picked.to_ndarray(format="rgb24"))
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=quality)
    return out.getvalue()


def _middle_time(container: av.container.InputContainer, stream: av.VideoStream) -> float:
    """Half the video's duration, in seconds (0 when the file does not say)."""
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base) / 2
    if container.duration is not None:
        return container.duration / av.time_base / 2
    return 0.0


async def store_thumbnail(blobs: BlobStore, key: str, video: Path) -> int:
    """Make the thumbnail of ``video`` (on a thread) and store it at ``key``; its bytes.

    A video that does not decode gets no thumbnail (logged; 0 bytes): the video itself
    is still served. Storage errors propagate, for the caller's retry.
    """
    try:
        jpeg = await asyncio.to_thread(thumbnail_jpeg, video)
    except (av.error.FFmpegError, ValueError, OSError) as exc:
        log.warning("no thumbnail for %s: %s", key, exc)
        return 0
    await blobs.put_bytes(key, jpeg)
    return len(jpeg)
