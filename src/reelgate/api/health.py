"""Liveness and readiness probes for load balancers and orchestrators."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from reelgate.api.videos import json_response
from reelgate.ports import BlobStore, TaskStore

router = APIRouter()


@router.get("/healthz", summary="The process is alive")
async def healthz() -> Response:
    return json_response({"status": "ok"})


@router.get("/readyz", summary="The database and the storage answer")
async def readyz(request: Request) -> Response:
    store: TaskStore = request.app.state.store
    blobs: BlobStore = request.app.state.blobs
    await store.ping()
    await blobs.ping()
    return json_response({"status": "ready"})
