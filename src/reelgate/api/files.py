"""The signed download route for videos kept in local storage."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse

from reelgate.domain.errors import NotFound
from reelgate.ports import BlobStore, Clock
from reelgate.services.signing import Signer
from reelgate.services.tasks import FILES_PREFIX

router = APIRouter()


@router.api_route(FILES_PREFIX + "{key:path}", methods=["GET", "HEAD"], summary="Download a video")
async def download(
    key: str, request: Request, expires: str | None = None, signature: str | None = None
) -> FileResponse:
    signer: Signer = request.app.state.signer
    clock: Clock = request.app.state.clock
    blobs: BlobStore = request.app.state.blobs
    signer.verify(FILES_PREFIX + key, expires, signature, clock())
    path = blobs.local_path(key)
    if path is None or not path.is_file():
        raise NotFound("this video is no longer stored")
    return FileResponse(
        path, media_type="video/mp4", headers={"Cache-Control": "private, max-age=3600"}
    )
