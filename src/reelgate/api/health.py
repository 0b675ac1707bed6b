"""Liveness and readiness probes for load balancers and orchestrators.

``/readyz`` answers 503 in the envelope (``service_unavailable``, ``Retry-After``)
while the database or the storage cannot take writes: the database does not answer or
is read-only, or a local folder (the SQLite database's, the blob storage's, the render
scratch folder of a process that renders) refuses a small write or has less than
``REELGATE_MIN_FREE_BYTES`` free. The detail goes to the log, never into the answer.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from reelgate.api.videos import json_response
from reelgate.blobs.local import check_writable
from reelgate.ports import BlobStore, TaskStore
from reelgate.settings import Settings

router = APIRouter()


@router.get("/healthz", summary="The process is alive")
async def healthz() -> Response:
    return json_response({"status": "ok"})


@router.get("/readyz", summary="The database and the storage answer and take writes")
async def readyz(request: Request) -> Response:
    store: TaskStore = request.app.state.store
    blobs: BlobStore = request.app.state.blobs
    settings: Settings = request.app.state.settings
    await store.ping()
    await store.check_writes(min_free_bytes=settings.min_free_bytes)
    folders = [settings.data_dir / "scratch"] if settings.workers > 0 else []
    await check_writable(blobs, folders, min_free_bytes=settings.min_free_bytes)
    return json_response({"status": "ready"})
