"""``GET /v1/videos``: the caller's tasks, a page at a time, in a list object.

Each item is the video object ``GET /v1/videos/{id}`` answers, byte for byte (the same
writer, ``videos.video_json``); ``first_id`` and ``last_id`` name the page's ends
(``null`` on an empty page), and ``after=<last_id>`` asks for the next page while
``has_more`` is true.
"""

from __future__ import annotations

from json.encoder import encode_basestring_ascii

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from reelgate.api.videos import current_owner, video_json
from reelgate.domain.listing import Page, parse_list_query
from reelgate.services.tasks import TaskService

router = APIRouter()


# The parameters are declared for /openapi.json; the values are read from the query
# string by ``parse_list_query`` (a name sent twice is refused, not silently merged).
@router.get("/v1/videos", summary="List your video tasks, newest first, a page at a time")
async def list_videos(
    request: Request,
    owner: str = Depends(current_owner),
    after: str | None = Query(None, description="the last task id of the page before"),
    limit: str | None = Query(None, description="1 to 100 tasks on a page [20]"),
    order: str | None = Query(None, description="desc (newest first) or asc [desc]"),
    status: str | None = Query(None, description="SUBMITTED, IN_PROGRESS, SUCCESS, FAILED, ERROR"),
    model: str | None = Query(None, description="only tasks of this model"),
    created_after: str | None = Query(None, description="Unix seconds: created at or after"),
    created_before: str | None = Query(None, description="Unix seconds: created before"),
) -> Response:
    params = request.query_params
    query = parse_list_query({name: params.getlist(name) for name in params})
    tasks: TaskService = request.app.state.tasks
    page = await tasks.list(owner, query)
    return Response(list_json(page, tasks), media_type="application/json")


def list_json(page: Page, tasks: TaskService) -> bytes:
    """The list object of ``page``, compact JSON as the other routes write it."""
    data = b",".join(video_json(task, tasks) for task in page.tasks)
    first, last = (page.tasks[0].id, page.tasks[-1].id) if page.tasks else (None, None)
    return b"".join(
        [
            b'{"object":"list","data":[',
            data,
            b'],"has_more":',
            b"true" if page.has_more else b"false",
            b',"first_id":',
            _id(first),
            b',"last_id":',
            _id(last),
            b"}",
        ]
    )


def _id(task_id: str | None) -> bytes:
    return b"null" if task_id is None else encode_basestring_ascii(task_id).encode()
