"""The built-in CPU renderer: real H.264 MP4 files made offline from the prompt.

``render_preview`` draws a job's frames (``reelgate.renderers.frames``) and encodes them
with libx264 (yuv420p, one encoder thread) into an MP4. ``PreviewRenderer`` runs it in a
process pool so that the event loop keeps answering; ``InstantRenderer`` writes a tiny
ready-made clip at once, for benchmarks and dispatch tests.

Sandbox markers: a prompt can ask for a failure, so that clients can test their error
paths offline.

- ``[[sandbox:fail]]`` (``FAIL_MARKER``): the render is refused as a provider's content
  filter would refuse it, ``RenderRejected``, after some early progress; the task ends
  FAILED.
- ``[[sandbox:error]]`` (``ERROR_MARKER``): the render fails for an internal reason,
  ``RenderError``, after some early progress; the task ends ERROR.

The fail marker wins when a prompt holds both.

Progress from the pool's children: every child writes ``(key, progress)`` to one pipe
handed to the pool's initializer; a write of a few bytes to a pipe is atomic, so no
lock is needed that a dying child could leave held. One parent thread reads the pipe
and hands each value to the event loop of the render that waits for it, which awaits
the caller's progress callback in order; values that arrive after their render has
returned are dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import io
import itertools
import multiprocessing
import multiprocessing.context
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from multiprocessing.connection import Connection
from pathlib import Path
from typing import BinaryIO

import av
import numpy as np
from av.container import OutputContainer
from av.video.stream import VideoStream

from reelgate.domain.errors import RenderError, RenderRejected
from reelgate.ports import ProgressFn, RenderJob
from reelgate.renderers.frames import make_scene

FAIL_MARKER = "[[sandbox:fail]]"
ERROR_MARKER = "[[sandbox:error]]"
MARKER_AT = 0.2  # the share of the frames rendered before a marker's failure
PROGRESS_STEP = 4  # report progress at most once per this many percent
# mbtree off: with it, this x264 build's output varies from run to run (it reads
# uninitialised memory); without it the same job gives the same bytes every time.
X264_OPTIONS = {"preset": "veryfast", "crf": "23", "x264-params": "mbtree=0"}
MP4_OPTIONS = {"movflags": "+faststart"}
# Not forkserver: a SIGTERM to the process group kills the fork server, and the pool
# sees its children as dead (their exit is reported through the fork server).
START_METHOD = "spawn"
_DRAIN_SECONDS = 10.0  # how long a finished render waits for its last progress values


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
    ``RenderError`` for the error marker or a failed encode; no file is left then.
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
    except (av.error.FFmpegError, OSError) as exc:
        raise RenderError(f"the preview renderer could not write the video: {exc}") from exc
    finally:
        if not finished:
            out_path.unlink(missing_ok=True)
    report(99)


class PreviewRenderer:
    """The ``Renderer`` that runs ``render_preview`` in a pool of ``processes`` processes.

    ``delays`` maps a model id (or ``"*"`` for every other model) to extra seconds each
    render of it takes. The children lower their priority by ``nice`` so that the API in
    the parent keeps answering. A child that dies fails its render with ``RenderError``
    and the pool is made anew for the next one. Cancelling ``render`` stops waiting at
    once; a render already running then finishes in its child and its file is deleted.
    """

    name = "preview"

    def __init__(
        self, processes: int = 1, delays: Mapping[str, float] | None = None, nice: int = 10
    ) -> None:
        if processes < 1:
            raise ValueError(f"processes must be at least 1, got {processes}")
        self._processes = processes
        self._delays = dict(delays or {})
        self._nice = nice
        self._context = multiprocessing.get_context(START_METHOD)
        self._pool: ProcessPoolExecutor | None = None
        self._relay: _ProgressRelay | None = None
        self._keys = itertools.count()

    async def render(self, job: RenderJob, out_path: Path, progress: ProgressFn) -> None:
        """Render ``job`` into ``out_path`` in a child process, relaying its progress.

        Raises the child's ``RenderRejected`` or ``RenderError`` as they were raised
        there (they pickle with their message and code), or whatever ``progress`` raised.
        """
        relay = self._relay = self._relay or _ProgressRelay(self._context)
        key = next(self._keys)
        inbox = relay.open(key)  # before the child starts, so that no value is lost
        try:
            pool, future = self._submit(key, job, out_path, relay)
            await self._wait(pool, future, inbox, progress, out_path)
        finally:
            relay.close_route(key)

    async def close(self) -> None:
        """Stop the pool (queued renders are cancelled, running ones killed) and the relay."""
        pool, self._pool = self._pool, None
        relay, self._relay = self._relay, None
        if pool is not None:
            await asyncio.to_thread(_stop_pool, pool)
        if relay is not None:
            await asyncio.to_thread(relay.stop)

    def _submit(
        self, key: int, job: RenderJob, out_path: Path, relay: _ProgressRelay
    ) -> tuple[ProcessPoolExecutor, Future[None]]:
        delay = self._delays.get(job.model, self._delays.get("*", 0.0))
        pool = self._pool = self._pool or self._new_pool(relay)
        try:
            return pool, pool.submit(_render_in_child, key, job, out_path, delay)
        except BrokenProcessPool:  # an earlier render's child died: start afresh, once
            self._drop(pool)
            pool = self._pool = self._new_pool(relay)
            return pool, pool.submit(_render_in_child, key, job, out_path, delay)

    def _new_pool(self, relay: _ProgressRelay) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(
            self._processes,
            mp_context=self._context,
            initializer=_init_child,
            initargs=(relay.writer, self._nice),
        )

    async def _wait(
        self,
        pool: ProcessPoolExecutor,
        future: Future[None],
        inbox: asyncio.Queue[int | None],
        progress: ProgressFn,
        out_path: Path,
    ) -> None:
        pump = asyncio.create_task(_pump(inbox, progress))
        result = asyncio.wrap_future(future)
        try:
            await _follow(result, pump)
        except BrokenProcessPool as exc:
            self._drop(pool)
            raise RenderError("the preview render process died before it finished") from exc
        finally:
            pump.cancel()
            if result.done() and not result.cancelled():
                result.exception()  # retrieved: asyncio logs no "never retrieved" for it
            result.cancel()  # no late outcome reaches a render that has returned
            if not future.done():
                future.cancel()
                future.add_done_callback(functools.partial(_discard, out_path))

    def _drop(self, pool: ProcessPoolExecutor) -> None:
        if self._pool is pool:
            self._pool = None
        pool.shutdown(wait=False, cancel_futures=True)


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
        await asyncio.to_thread(out_path.write_bytes, _tiny_clip())  # keep the loop free
        await progress(99)

    async def close(self) -> None:
        """Nothing to release."""


class _ProgressRelay:
    """The pipe the children report progress on, and the parent thread that routes it."""

    def __init__(self, context: multiprocessing.context.BaseContext) -> None:
        self._reader, self.writer = context.Pipe(duplex=False)
        self._routes: dict[int, tuple[asyncio.AbstractEventLoop, asyncio.Queue[int | None]]] = {}
        self._thread = threading.Thread(target=self._run, name="preview-progress", daemon=True)
        self._thread.start()

    def open(self, key: int) -> asyncio.Queue[int | None]:
        """The inbox of render ``key``, fed on the running loop; ``None`` ends it."""
        inbox: asyncio.Queue[int | None] = asyncio.Queue()
        self._routes[key] = (asyncio.get_running_loop(), inbox)
        return inbox

    def close_route(self, key: int) -> None:
        """Drop whatever still comes for render ``key``."""
        self._routes.pop(key, None)

    def stop(self) -> None:
        """End the thread and close the pipe (blocking; the children must be gone)."""
        self.writer.send(None)
        self._thread.join()
        self._reader.close()
        self.writer.close()

    def _run(self) -> None:
        while True:
            try:
                message = self._reader.recv()
            except (EOFError, OSError):
                return
            if message is None:
                return
            key, value = message
            route = self._routes.get(key)
            if route is not None:
                loop, inbox = route
                with contextlib.suppress(RuntimeError):  # that loop has closed
                    loop.call_soon_threadsafe(inbox.put_nowait, value)


async def _pump(inbox: asyncio.Queue[int | None], progress: ProgressFn) -> None:
    while (value := await inbox.get()) is not None:
        await progress(value)


async def _follow(result: asyncio.Future[None], pump: asyncio.Task[None]) -> None:
    """Wait for the child's result and the progress before it, raising what either raised."""
    done, _ = await asyncio.wait((result, pump), return_when=asyncio.FIRST_COMPLETED)
    if pump in done:
        pump.result()  # a progress callback that raised stops the wait at once
        await result
        return
    if result.cancelled():  # by ``close``, before the render started
        raise RenderError("the preview renderer closed before this render started")
    if not isinstance(result.exception(), BrokenProcessPool):
        await asyncio.wait((pump,), timeout=_DRAIN_SECONDS)
        if pump.done():
            pump.result()
    result.result()


_child_pipe: Connection | None = None


def _stop_pool(pool: ProcessPoolExecutor) -> None:
    """Shut ``pool`` down, killing the children of renders that nobody awaits any more.

    ``close`` runs after the worker has drained: a render still running then was
    cancelled and its task handed back, so waiting for it only delays the exit.
    """
    children = list((pool._processes or {}).values())  # 3.14: pool.terminate_workers()
    pool.shutdown(wait=False, cancel_futures=True)
    for child in children:
        if child.is_alive():
            child.kill()  # SIGKILL: the children ignore SIGTERM
    pool.shutdown(wait=True)


def _init_child(pipe: Connection, nice: int) -> None:
    global _child_pipe
    _child_pipe = pipe
    # The parent decides when a render stops: a signal sent to the whole process group
    # (Ctrl-C in a terminal, systemd's default KillMode) must not end it under the parent.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if nice:
        os.nice(nice)


def _render_in_child(key: int, job: RenderJob, out_path: Path, delay: float) -> None:
    """Run ``render_preview`` in a pool child; any error reaches the parent as a RenderError."""
    pipe = _child_pipe
    if pipe is None:
        raise RenderError("the preview renderer's child has no progress pipe")
    try:
        render_preview(job, out_path, lambda value: pipe.send((key, value)), delay=delay)
    except RenderError:
        raise  # RenderError and RenderRejected pickle with their message and code
    except Exception as exc:  # anything else may not pickle: send its text instead
        raise RenderError(f"the preview renderer failed: {exc!r}") from exc
    finally:
        pipe.send((key, None))


def _sandbox_failure(prompt: str) -> RenderError | None:
    if FAIL_MARKER in prompt:
        return RenderRejected(
            f"the prompt was rejected by the sandbox content filter ({FAIL_MARKER})"
        )
    if ERROR_MARKER in prompt:
        return RenderError(f"the sandbox renderer failed on purpose ({ERROR_MARKER})")
    return None


def _discard(out_path: Path, _: object) -> None:
    out_path.unlink(missing_ok=True)


@functools.cache
def _tiny_clip() -> bytes:
    buffer = io.BytesIO()
    with open_mp4(buffer, width=64, height=64, fps=24) as (container, stream):
        frame = av.VideoFrame.from_ndarray(np.full((96, 64), 128, np.uint8), format="yuv420p")
        frame.pts = 0
        container.mux(stream.encode(frame))
    return buffer.getvalue()
