"""The signed download route for files kept in local storage (videos, input images).

``serve_file`` serves a stored file with Range, ETag and HEAD; the content route
(``api/content.py``) serves its videos and thumbnails through it too.
"""

from __future__ import annotations

import mimetypes
import re
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, Response

from reelgate.api.errors import envelope
from reelgate.domain.errors import NotFound
from reelgate.ports import BlobStore, Clock
from reelgate.services.signing import Signer
from reelgate.services.tasks import FILES_PREFIX

router = APIRouter()

_SPEC = re.compile(r"([0-9]*)-([0-9]*)")
_BEYOND = 10**18  # more than any file's size: longer numbers are clamped to it


class _Unsatisfiable(Exception):
    """A valid Range header whose one range lies past the end of the file."""


# Two routes, not one for both methods: each operation gets its own id in /openapi.json.
@router.get(FILES_PREFIX + "{key:path}", summary="Download a video")
@router.head(FILES_PREFIX + "{key:path}", summary="A video's headers (size, type, ETag)")
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
    return serve_file(request, path, key)


def serve_file(request: Request, path: Path, key: str, *, revalidate: bool = False) -> Response:
    """The stored file at ``path`` (blob ``key``): GET or HEAD, with Range, ETag, length.

    Shared by the signed ``/files`` route and ``GET /v1/videos/{id}/content``. With
    ``revalidate``, an ``If-None-Match`` that names the file's ETag gets ``304``.
    """
    stat = path.stat()
    ttl = request.app.state.settings.url_ttl
    # Videos (videos/<task>.<attempt>.mp4) download as <task>.mp4; input images, handed
    # to providers that fetch them, keep their own name and type.
    name = key.rsplit("/", 1)[-1]
    stem, _, extension = name.partition(".")
    extension = extension.rsplit(".", 1)[-1]
    response = FileResponse(
        path,
        stat_result=stat,
        media_type=mimetypes.guess_type(name)[0] or "application/octet-stream",
        filename=f"{stem}.{extension}",
        content_disposition_type="inline",
        headers={"Cache-Control": f"private, max-age={ttl}"},
    )
    etag = response.headers.get("etag")
    if revalidate and etag is not None and _names(request.headers.get("if-none-match"), etag):
        kept = {k: v for k, v in response.headers.items() if k in _NOT_MODIFIED_HEADERS}
        return Response(status_code=304, headers=kept)
    header = request.headers.get("range")
    if_range = request.headers.get("if-range")
    if if_range is not None and if_range not in (
        response.headers.get("etag"),
        response.headers.get("last-modified"),
    ):
        header = None  # the file changed since: If-Range asks for all of it (RFC 9110)
    wanted = None
    if header is not None:
        try:
            wanted = single_range(header, stat.st_size)
        except _Unsatisfiable:
            return envelope(
                416,
                f"the range {header[:80]!r} is outside the file's {stat.st_size} bytes",
                type_="invalid_request_error",
                code="range_not_satisfiable",
                headers={"Content-Range": f"bytes */{stat.st_size}"},
            )
    # FileResponse reads the Range header itself: it gets one it serves as 206, or none.
    headers = [(k, v) for k, v in request.scope["headers"] if k != b"range"]
    if wanted is not None:
        headers.append((b"range", f"bytes={wanted[0]}-{wanted[1]}".encode("latin-1")))
    request.scope["headers"] = headers
    return response


_NOT_MODIFIED_HEADERS = ("etag", "last-modified", "cache-control", "content-disposition")


def _names(if_none_match: str | None, etag: str) -> bool:
    """Whether an ``If-None-Match`` header names ``etag`` (weakly compared) or is ``*``."""
    if if_none_match is None:
        return False
    tags = [tag.strip().removeprefix("W/") for tag in if_none_match.split(",")]
    return "*" in tags or etag.removeprefix("W/") in tags


def single_range(header: str, size: int) -> tuple[int, int] | None:
    """The one byte range a Range header asks for: (first, last), both within the file.

    None when the header is to be ignored and the whole file sent (RFC 9110, 14.2):
    it does not parse, or it asks for several ranges (only single ranges are served,
    which is all that players and browsers ask for). Raises ``_Unsatisfiable`` when
    its range starts past the end of the file, or is an empty suffix.
    """
    unit, sep, specs = header.partition("=")
    if not sep or unit.strip().lower() != "bytes":
        return None
    parts = [part.strip() for part in specs.split(",") if part.strip()]
    match = _SPEC.fullmatch(parts[0]) if len(parts) == 1 else None
    if match is None:
        return None
    first, last = (_number(digits) for digits in match.groups())
    if first is not None:
        if last is not None and last < first:
            return None  # an invalid range-spec: the header is ignored
        if first >= size:
            raise _Unsatisfiable()
        return first, size - 1 if last is None else min(last, size - 1)
    if last is None:
        return None  # "bytes=-"
    if last == 0 or size == 0:
        raise _Unsatisfiable()
    return max(size - last, 0), size - 1


def _number(digits: str) -> int | None:
    if not digits:
        return None
    digits = digits.lstrip("0") or "0"
    return int(digits) if len(digits) < 19 else _BEYOND
