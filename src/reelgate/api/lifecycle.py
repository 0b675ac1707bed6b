"""Cancel and delete in CometAPI's dialect: ``POST /v1/videos/{id}/cancel`` and
``DELETE /v1/videos/{id}``.

Both go through FastAPI (the fast path takes only ``GET /v1/videos/{id}``), check the
owner as retrieve does (another owner's task is ``task_not_exist``), and call one
service method each.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from reelgate.api.videos import current_owner, json_response, video_body
from reelgate.services.tasks import TaskService

router = APIRouter()


@router.post(
    "/v1/videos/{task_id}/cancel",
    summary="Cancel a video task",
    description=(
        "Stops a SUBMITTED or IN_PROGRESS task: it ends FAILED with "
        '`error: {"code": "cancelled"}`; the answer is the task as `GET /v1/videos/{id}` '
        "shows it. A task already cancelled is answered as it is; any other finished task "
        "is 409 `task_not_cancellable`."
    ),
)
async def cancel_video(
    task_id: str, request: Request, owner: str = Depends(current_owner)
) -> Response:
    tasks: TaskService = request.app.state.tasks
    task = await tasks.cancel(owner, task_id)
    return json_response(video_body(task, tasks))


@router.delete(
    "/v1/videos/{task_id}",
    summary="Delete a video task",
    description=(
        "Cancels the task if it still runs, deletes its stored files (input image, "
        "videos, thumbnails) and the task; afterwards the id is unknown (`task_not_exist`)."
    ),
)
async def delete_video(
    task_id: str, request: Request, owner: str = Depends(current_owner)
) -> Response:
    tasks: TaskService = request.app.state.tasks
    await tasks.delete(owner, task_id)
    return json_response({"id": task_id, "object": "video.deleted", "deleted": True})
