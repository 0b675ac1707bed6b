"""The built-in CPU renderer: real H.264 MP4 files made offline from the prompt.

``render_preview`` draws a job's frames (``reelgate.renderers.frames``) and encodes them
with libx264 (yuv420p, one encoder thread) into an MP4. ``PreviewRenderer`` runs it in
child processes so that the event loop keeps answering; ``InstantRenderer`` writes a tiny
ready-made clip at once, for benchmarks and dispatch tests.

Sandbox markers: a prompt can ask for a failure, so that clients can test their error
paths offline.

- ``[[sandbox:fail]]`` (``FAIL_MARKER``): the render is refused as a provider's content
  filter would refuse it, ``RenderRejected``, after some early progress; the task ends
  FAILED.
- ``[[sandbox:error]]`` (``ERROR_MARKER``): the render fails for an internal reason,
  ``RenderError``, after some early progress; the task ends ERROR.

The fail marker wins when a prompt holds both.

A dead render process fails its own render only (``RENDER_CRASHED``, retried by the
worker), and no render process outlives its parent: see ``reelgate.renderers.processes``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import io
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import BinaryIO

import av
import numpy as np
from av.container import OutputContainer
from av.video.stream import VideoStream

from reelgate.domain.errors import RenderError, RenderRejected, Unavailable
from reelgate.ports import ProgressFn, RenderJob
from reelgate.renderers.frames import make_scene
from reelgate.renderers.processes import RenderProcesses

FAIL_MARKER = "[[sandbox:fail]]"
ERROR_MARKER = "[[sandbox:error]]"
MARKER_AT = 0.2  # the share of the frames rendered before a marker's failure
PROGRESS_STEP = 4  # report progress at most once per this many percent
# mbtree off: with it, this x264 build's output varies from run to run (it reads
# uninitialised memory); without it the same job gives the same bytes every time.
X264_OPTIONS = {"preset": "veryfast", "crf": "23", "x264-params": "mbtree=0"}
MP4_OPTIONS = {"movflags": "+faststart"}


@contextlib.contextmanager
def open_mp4(
    target: Path | BinaryIO, *, width: int, height: int, fps: int
) -> Iterator[tuple[OutputContainer, VideoStream]]:
    """An MP4 with one H.264 stream as the preview renderer encodes it; flushed on exit.

    Frames sent to the stream are yuv420p with ``pts`` counted in frames. A file gets
    its index first (``faststart``), for browsers; a file object cannot.
    """
    options = MP4_OPTIONS if isinstance(target, Path) else {}
    with av.open(target, mode="w", format="mp4", container_options=options) as container:
        stream = container.add_stream("libx264", rate=fps, options=dict(X264_OPTIONS))
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.thread_count = 1  # one video per process: no encoder threads
        yield container, stream
        container.mux(stream.encode(None))


def render_preview(
    job: RenderJob, out_path: Path, report: Callable[[int], None], *, delay: float = 0.0
) -> None:
    """Write ``job``'s video to ``out_path``, calling ``report`` with progress 0..99.

    ``delay`` seconds of sleep are spread evenly over the frames, to play a slow
    provider. Raises ``RenderRejected`` for an undecodable image or the fail marker,
    ``RenderError`` for the error marker or a failed encode, and ``Unavailable`` when
    the file cannot be written (a full disk, a folder that is not writable: a transient
    fault, retried); no file is left then. Messages of ``RenderError`` are safe to show
    to a client; details (an encoder's words) are in the exception's notes.
    """
    total = job.seconds * job.fps
    if total < 1:
        raise RenderError(f"a video needs at least one frame, got {job.seconds} s at {job.fps} fps")
    failure = _sandbox_failure(job.prompt)
    report(0)
    try:
        scene = make_scene(
            job.prompt,
            width=job.width,
            height=job.height,
            fps=job.fps,
            frames=total,
            image=job.image,
        )
    except ValueError as exc:
        raise RenderError(f"the preview renderer cannot draw this job: {exc}") from exc
    fail_at = int(total * MARKER_AT) if failure is not None else -1
    pause = max(delay, 0.0) / total
    reported, finished = 0, False
    try:
        with open_mp4(out_path, width=job.width, height=job.height, fps=job.fps) as (
            container,
            stream,
        ):
            for index in range(total):
                if index == fail_at and failure is not None:
                    raise failure
                frame = scene.frame(index)
                frame.pts = index
                container.mux(stream.encode(frame))
                if pause:
                    time.sleep(pause)
                value = (index + 1) * 98 // total
                if value - reported >= PROGRESS_STEP:
                    report(value)
                    reported = value
        finished = True
    except OSError as exc:  # PyAV's errors that carry an errno are OSErrors too
        raise Unavailable(f"the preview renderer could not write {out_path}: {exc}") from exc
    except av.error.FFmpegError as exc:
        error = RenderError("the preview renderer could not encode the video")
        error.add_note(f"encoder: {exc}")
        raise error from exc
    finally:
        if not finished:
            out_path.unlink(missing_ok=True)
    report(99)


class PreviewRenderer:
    """The ``Renderer`` that runs ``render_preview`` in up to ``processes`` children.

    ``delays`` maps a model id (or ``"*"`` for every other model) to extra seconds each
    render of it takes. The children lower their priority by ``nice`` so that the API in
    the parent keeps answering. A child that dies fails its own render only, with
    ``RenderError`` code ``RENDER_CRASHED``; the next render gets a new child. Cancelling
    ``render`` (or a progress callback that raises) kills its child at once and deletes
    its file. See ``reelgate.renderers.processes``.
    """

    name = "preview"

    def __init__(
        self, processes: int = 1, delays: Mapping[str, float] | None = None, nice: int = 10
    ) -> None:
        self._delays = dict(delays or {})
        self._processes = RenderProcesses(
            render_preview, processes=processes, nice=nice, name="preview"
        )

    async def render(self, job: RenderJob, out_path: Path, progress: ProgressFn) -> None:
        """Render ``job`` into ``out_path`` in a child process, relaying its progress.

        Raises the child's ``RenderRejected``, ``RenderError`` or ``Unavailable`` as
        they were raised there, ``RenderError`` code ``RENDER_CRASHED`` when the child
        died, or whatever ``progress`` raised.
        """
        delay = self._delays.get(job.model, self._delays.get("*", 0.0))
        await self._processes.run(job, out_path, progress, delay=delay)

    async def close(self) -> None:
        """Kill the children and wait until they are gone (a later render starts afresh)."""
        await self._processes.close()


class InstantRenderer:
    """A ``Renderer`` that writes a ready-made 1-frame 64x64 MP4 at once (no processes).

    It honours the sandbox markers too, raising at once. ``delays`` (as for
    ``PreviewRenderer``) make a render take wall time without using the CPU.
    """

    name = "instant"

    def __init__(self, delays: Mapping[str, float] | None = None) -> None:
        self._delays = dict(delays or {})

    async def render(self, job: RenderJob, out_path: Path, progress: ProgressFn) -> None:
        """Write the tiny clip to ``out_path`` and report progress once (or per tenth)."""
        failure = _sandbox_failure(job.prompt)
        if failure is not None:
            raise failure
        delay = self._delays.get(job.model, self._delays.get("*", 0.0))
        if delay > 0:
            for step in range(1, 10):
                await asyncio.sleep(delay / 10)
                await progress(step * 10)
            await asyncio.sleep(delay / 10)
        try:
            await asyncio.to_thread(out_path.write_bytes, _tiny_clip())  # keep the loop free
        except OSError as exc:
            raise Unavailable(f"the instant renderer could not write {out_path}: {exc}") from exc
        await progress(99)

    async def close(self) -> None:
        """Nothing to release."""


def _sandbox_failure(prompt: str) -> RenderError | None:
    if FAIL_MARKER in prompt:
        return RenderRejected(
            f"the prompt was rejected by the sandbox content filter ({FAIL_MARKER})"
        )
    if ERROR_MARKER in prompt:
        return RenderError(f"the sandbox renderer failed on purpose ({ERROR_MARKER})")
    return None


@functools.cache
def _tiny_clip() -> bytes:
    buffer = io.BytesIO()
    with open_mp4(buffer, width=64, height=64, fps=24) as (container, stream):
        frame = av.VideoFrame.from_ndarray(np.full((96, 64), 128, np.uint8), format="yuv420p")
        frame.pts = 0
        container.mux(stream.encode(frame))
    return buffer.getvalue()
