"""The signed download route for files kept in local storage (videos, input images)."""

from __future__ import annotations

import mimetypes
import re

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, Response

from reelgate.api.errors import envelope
from reelgate.domain.errors import NotFound
from reelgate.ports import BlobStore, Clock
from reelgate.services.signing import Signer
from reelgate.services.tasks import FILES_PREFIX

router = APIRouter()

_RANGE = re.compile(r"bytes=\s*(\d*)\s*-\s*(\d*)\s*")


@router.api_route(FILES_PREFIX + "{key:path}", methods=["GET", "HEAD"], summary="Download a video")
async def download(
    key: str, request: Request, expires: str | None = None, signature: str | None = None
) -> Response:
    signer: Signer = request.app.state.signer
    clock: Clock = request.app.state.clock
    blobs: BlobStore = request.app.state.blobs
    signer.verify(FILES_PREFIX + key, expires, signature, clock())
    path = blobs.local_path(key)
    if path is None or not path.is_file():
        raise NotFound("this video is no longer stored")
    size = path.stat().st_size
    ranges = request.headers.get("range")
    if ranges is not None and not _satisfiable(ranges, size):
        if _well_formed(ranges):
            return envelope(
                416,
                f"the range {ranges!r} is outside the file's {size} bytes",
                type_="invalid_request_error",
                code="range_not_satisfiable",
                headers={"Content-Range": f"bytes */{size}"},
            )
        # RFC 9110: a Range header that does not parse is ignored; the whole file is sent.
        request.scope["headers"] = [(k, v) for k, v in request.scope["headers"] if k != b"range"]
    ttl = request.app.state.settings.url_ttl
    # Videos (videos/<task>.<attempt>.mp4) download as <task>.mp4; input images, handed
    # to providers that fetch them, keep their own name and type.
    name = key.rsplit("/", 1)[-1]
    stem, _, extension = name.partition(".")
    extension = extension.rsplit(".", 1)[-1]
    return FileResponse(
        path,
        media_type=mimetypes.guess_type(name)[0] or "application/octet-stream",
        filename=f"{stem}.{extension}",
        content_disposition_type="inline",
        headers={"Cache-Control": f"private, max-age={ttl}"},
    )


def _well_formed(header: str) -> bool:
    unit, _, specs = header.partition("=")
    return unit.strip() == "bytes" and all(
        _RANGE.fullmatch("bytes=" + spec) and spec.strip() != "-" for spec in specs.split(",")
    )


def _satisfiable(header: str, size: int) -> bool:
    """True when the header parses and at least one of its ranges overlaps the file."""
    if not _well_formed(header):
        return False
    for spec in header.partition("=")[2].split(","):
        match = _RANGE.fullmatch("bytes=" + spec)
        assert match is not None
        start, end = match.groups()
        if start and int(start) < size and (not end or int(end) >= int(start)):
            return True
        if not start and end and int(end) > 0 and size > 0:
            return True
    return False
