"""The benchmarks' baseline route: the same stack and JSON, without auth or store.

Mounted only when ``REELGATE_BENCH_ROUTES`` is true (never in production).
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from reelgate.api.videos import json_response, video_body
from reelgate.domain.status import Status
from reelgate.domain.task import Task, TaskSpec
from reelgate.services.tasks import TaskService, output_key

router = APIRouter(include_in_schema=False)


@router.get("/bench/videos/{task_id}")
async def baseline(task_id: str, request: Request) -> Response:
    """A SUCCESS video body shaped exactly as a retrieve's, signed link included."""
    tasks: TaskService = request.app.state.tasks
    now = request.app.state.clock()
    spec = TaskSpec("doubao-seedance-2-0-fast", "baseline", 5, "16:9", "720p")
    task = Task(
        task_id, "bench", spec, Status.SUCCESS, 100, now, now, now, output_key=output_key(task_id)
    )
    return json_response(video_body(task, tasks))
