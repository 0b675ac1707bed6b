"""Callbacks from providers (Ark's ``callback_url``): a hint to poll a task at once.

The URL handed to the provider is signed like a download link, so only it can call.
Polling stays the source of truth: the body is not trusted, only the task id, and a
task whose watcher runs in another process is simply polled on its own schedule.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from reelgate.api.videos import json_response
from reelgate.ports import Clock
from reelgate.services.signing import Signer
from reelgate.services.tasks import CALLBACKS_PREFIX

router = APIRouter()


@router.post(CALLBACKS_PREFIX + "{task_id}", summary="A provider says a task changed")
async def provider_callback(
    task_id: str, request: Request, expires: str | None = None, signature: str | None = None
) -> Response:
    signer: Signer = request.app.state.signer
    clock: Clock = request.app.state.clock
    signer.verify(CALLBACKS_PREFIX + task_id, expires, signature, clock())
    polled = request.app.state.hint(task_id)
    return json_response({"received": True, "polled_now": polled})
