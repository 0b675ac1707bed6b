"""A finished task's files with the caller's key: ``GET|HEAD /v1/videos/{id}/content``.

``variant=video`` (the default) is the MP4, ``variant=thumbnail`` a JPEG of its middle
frame at the video's size (made once, when the render or re-host ended). Local storage
serves the file here, as the signed ``/files`` route does (``files.serve_file``: Range,
ETag, HEAD, and ``If-None-Match`` answered with 304). S3 storage answers ``302`` to a
presigned URL of the object (valid ``REELGATE_URL_TTL`` seconds): the bytes come from
the bucket, not through the API.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import RedirectResponse, Response

from reelgate.api.files import serve_file
from reelgate.api.videos import current_owner
from reelgate.domain.errors import InvalidParameter, NotFound
from reelgate.ports import BlobStore
from reelgate.services.tasks import TaskService

router = APIRouter()

CONTENT_PATH = "/v1/videos/{task_id}/content"
_TYPES = {"video": "video/mp4", "thumbnail": "image/jpeg"}


# Two routes, not one for both methods: each operation gets its own id in /openapi.json.
@router.get(CONTENT_PATH, summary="Download a finished task's video or thumbnail")
@router.head(CONTENT_PATH, summary="A finished task's video or thumbnail: headers only")
async def content(
    task_id: str,
    request: Request,
    owner: str = Depends(current_owner),
    variant: str | None = Query(None, description="video (the MP4) or thumbnail (a JPEG)"),
) -> Response:
    chosen = _variant(request)  # declared above for /openapi.json; read strictly here
    return await content_response(request, owner, task_id, chosen)


async def content_response(request: Request, owner: str, task_id: str, chosen: str) -> Response:
    """``owner``'s task's ``chosen`` variant (also the dashboard's, under its cookie)."""
    tasks: TaskService = request.app.state.tasks
    blobs: BlobStore = request.app.state.blobs
    key = await tasks.content(owner, task_id, chosen)
    path = blobs.local_path(key)
    if path is not None:
        if not path.is_file():  # deleted between the check and now
            raise NotFound(f"this task's {chosen} is no longer stored")
        return serve_file(request, path, key, revalidate=True)
    ttl: int = request.app.state.settings.url_ttl
    url = blobs.presigned_url(key, expires_in=ttl)
    if url is not None and url.startswith(("https://", "http://")):
        return RedirectResponse(url, status_code=302, headers={"Cache-Control": "no-store"})
    data = await blobs.get_bytes(key)  # in-memory storage (``memory:``): the bytes themselves
    return Response(data, media_type=_TYPES[chosen])


def _variant(request: Request) -> str:
    """The ``variant`` query parameter (``video`` when absent); nothing else is taken."""
    params = request.query_params
    for name in params:
        if name != "variant":
            raise InvalidParameter(
                f"unknown parameter {name!r}; content takes only variant", param=name
            )
    given = params.getlist("variant")
    if len(given) > 1:
        raise InvalidParameter("variant may be given once", param="variant")
    return given[0] if given else "video"
