"""Push: ``GET /v1/videos/{id}/events`` (server-sent events) and the long-poll of retrieve.

A stream sends one event per change of the task, each with its cursor (``id:``), its
kind (``event: status`` when the status changed, ``event: progress`` otherwise) and
the video object as ``GET /v1/videos/{id}`` showed it then (``data:``, JSON on one
line). Without ``Last-Event-ID`` it starts with the task's current state; with one, it
replays every change after that event. It ends after the terminal event, and sends a
comment line (``: keep-alive``) after every ``REELGATE_SSE_HEARTBEAT`` seconds of
silence, so that proxies keep an idle stream open; in its place, a ``progress`` event
under the last cursor when the task's estimated progress (a provider that reports
none) rose a step.

``GET /v1/videos/{id}?wait=N`` (``videos.retrieve_video`` hands it here) answers the
normal retrieve, byte for byte, as soon as the task changes, or after ``N`` seconds.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import replace

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response, StreamingResponse

from reelgate.api.videos import current_owner, json_response, video_body, video_json
from reelgate.domain.errors import ReelgateError, TaskNotFound
from reelgate.domain.progress import PROGRESS_STEP
from reelgate.domain.status import Phase, Status
from reelgate.domain.task import Event, Task
from reelgate.services.events import EventHub, parse_cursor, parse_wait
from reelgate.services.tasks import TaskService

router = APIRouter()
log = logging.getLogger("reelgate.api")

HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}  # no proxy buffering
KEEP_ALIVE = b": keep-alive\n\n"


@router.get(
    "/v1/videos/{task_id}/events",
    summary="Stream a video task's changes (server-sent events)",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}}},
)
async def video_events(
    task_id: str, request: Request, owner: str = Depends(current_owner)
) -> Response:
    return await stream_response(request, owner, task_id)


async def stream_response(request: Request, owner: str, task_id: str) -> Response:
    """The event stream of ``owner``'s task (also the dashboard's, under its cookie)."""
    tasks: TaskService = request.app.state.tasks
    header = request.headers.get("last-event-id")
    after = None if header is None or not header.strip() else parse_cursor(header.strip())
    await tasks.get(owner, task_id)  # errors (another owner's task) before the stream starts
    stream = frames(open_stream(request, owner, task_id), after)
    return StreamingResponse(stream, media_type="text/event-stream", headers=HEADERS)


def open_stream(request: Request, owner: str, task_id: str) -> Stream:
    """A ``Stream`` of ``owner``'s task over the application's services."""
    tasks: TaskService = request.app.state.tasks
    hub: EventHub = request.app.state.events
    return Stream(tasks, hub, owner, task_id, request.app.state.settings.sse_heartbeat)


class Stream:
    """One client's stream of one task: what it has sent so far."""

    def __init__(
        self, tasks: TaskService, hub: EventHub, owner: str, task_id: str, heartbeat: float
    ) -> None:
        self.tasks, self.hub = tasks, hub
        self.owner, self.task_id = owner, task_id
        self.heartbeat = heartbeat
        self.status: Status | None = None  # of the last event sent
        self.progress = -1  # the highest progress sent: never shown lower

    def frame(self, seq: int, task: Task) -> bytes:
        """One event: ``task`` as its video object, under cursor ``seq``."""
        kind = "status" if task.status is not self.status else "progress"
        self.status = task.status
        self.progress = max(self.progress, task.shown_progress(self.tasks.now()))
        data = video_json(task, self.tasks)
        return b"id: %d\nevent: %s\ndata: %s\n\n" % (seq, kind.encode(), data)

    def estimated(self, seq: int, task: Task) -> bytes | None:
        """A ``progress`` event when ``task``'s estimated progress rose a step (a provider
        that reports none: the estimate is no event), under the last cursor sent."""
        if task.shown_progress(self.tasks.now()) < self.progress + PROGRESS_STEP:
            return None
        return self.frame(seq, task)

    def snapshot(self, task: Task, event: Event) -> Task | None:
        """The task as it was at ``event`` (non-terminal); None when nothing shown changed."""
        progress = max(event.progress, self.progress)
        if event.status is self.status and progress == self.progress:
            return None
        phase = Phase.QUEUED if event.status is Status.SUBMITTED else Phase.RENDERING
        return replace(
            task,
            status=event.status,
            phase=phase,
            progress=progress,
            completed_at=None,
            output_key=None,
            error_code=None,
            error_message=None,
        )


async def frames(stream: Stream, after: int | None) -> AsyncIterator[bytes]:
    """The stream's frames after cursor ``after`` (None: the current state first)."""
    tasks, hub = stream.tasks, stream.hub
    try:
        if after is None:  # the current state first: the cursor, then the task (never older)
            after = await hub.last_seq(stream.task_id)
            task = await tasks.get(stream.owner, stream.task_id)
            yield stream.frame(after, task)
            if task.terminal:
                return
        while True:
            events = await hub.wait(stream.task_id, after, stream.heartbeat)
            if hub.closing and not events:
                return  # the server is stopping: the client resumes (Last-Event-ID) elsewhere
            if not events:  # deleted meanwhile: TaskNotFound ends the stream
                task = await tasks.get(stream.owner, stream.task_id)
                if not task.terminal:
                    yield stream.estimated(after, task) or KEEP_ALIVE
                    continue
                events = await hub.wait(stream.task_id, after, 0)  # its end, if not yet sent
                if not events:
                    return  # the client has seen the end (a resume after it)
            task = await tasks.get(stream.owner, stream.task_id)
            for event in events:
                after = event.seq
                if event.status.terminal:
                    yield stream.frame(event.seq, task)  # a terminal task never moves again
                    return
                shown = stream.snapshot(task, event)
                if shown is not None:
                    yield stream.frame(event.seq, shown)
    except TaskNotFound:
        return  # the task was deleted: nothing more will come
    except ReelgateError as exc:  # the database is away: end; the client resumes later
        log.warning("event stream of %s ended: %s", stream.task_id, exc.message)


async def long_poll(request: Request, owner: str, task_id: str, wait: str) -> Response:
    """``GET /v1/videos/{id}?wait=N``: the retrieve's answer once the task changed."""
    tasks: TaskService = request.app.state.tasks
    hub: EventHub = request.app.state.events
    seconds = parse_wait(wait)
    cursor = await hub.last_seq(task_id)  # before the read: a change after it ends the wait
    task = await tasks.get(owner, task_id)
    if not task.terminal and await hub.wait(task.id, cursor, seconds):
        task = await tasks.get(owner, task_id)
    return json_response(video_body(task, tasks))
