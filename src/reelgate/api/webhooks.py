"""The webhook routes: an owner's endpoints, the delivery log, the callback secret.

``POST /v1/webhooks`` answers the endpoint with its signing secret, the only time the
secret is shown. See docs/webhooks.md.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from reelgate.api.videos import current_owner, json_response
from reelgate.domain.errors import InvalidParameter, InvalidRequest, UnsupportedMediaType
from reelgate.domain.webhooks import CALLBACK, Delivery, DeliveryState, Endpoint
from reelgate.services.webhooks import WebhookService

router = APIRouter()
BODY_MAX = 16 * 1024


def endpoint_body(endpoint: Endpoint, *, secret: bool = False) -> dict[str, Any]:
    """An endpoint as the API shows it (its secret only when asked, at creation)."""
    body: dict[str, Any] = {
        "id": endpoint.id,
        "object": "webhook_endpoint",
        "url": endpoint.url,
        "description": endpoint.description,
        "created_at": int(endpoint.created_at),
    }
    if secret:
        body["secret"] = endpoint.secret
    return body


def delivery_body(delivery: Delivery) -> dict[str, Any]:
    """A delivery and the outcome of its last attempt, as the log shows it."""
    callback = delivery.endpoint_id == CALLBACK
    pending = delivery.state == DeliveryState.PENDING
    return {
        "id": delivery.id,
        "object": "webhook_delivery",
        "target": "callback_url" if callback else "endpoint",
        "endpoint_id": None if callback else delivery.endpoint_id,
        "url": delivery.url,
        "task_id": delivery.task_id,
        "type": delivery.type,
        "status": delivery.status,
        "state": delivery.state,
        "attempts": delivery.attempts,
        "created_at": int(delivery.created_at),
        "next_attempt_at": int(delivery.next_at) if pending else None,
        "delivered_at": None if delivery.delivered_at is None else int(delivery.delivered_at),
        "last_status": delivery.last_status,
        "last_error": delivery.last_error,
    }


async def _json_object(request: Request) -> dict[str, Any]:
    content_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if content_type != "application/json":
        raise UnsupportedMediaType("send the webhook endpoint as application/json")
    raw = await request.body()
    if len(raw) > BODY_MAX:
        raise InvalidRequest(f"the body is larger than {BODY_MAX} bytes")
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise InvalidRequest("the body is not valid JSON") from exc
    if not isinstance(body, dict):
        raise InvalidRequest('the body must be a JSON object: {"url": "https://…"}')
    return body


@router.post("/v1/webhooks", summary="Create a webhook endpoint (its secret is shown once)")
async def create_endpoint(request: Request, owner: str = Depends(current_owner)) -> Response:
    webhooks: WebhookService = request.app.state.webhooks
    endpoint = await webhooks.create_endpoint(owner, await _json_object(request))
    return json_response(endpoint_body(endpoint, secret=True))


@router.get("/v1/webhooks", summary="List your webhook endpoints")
async def list_endpoints(request: Request, owner: str = Depends(current_owner)) -> Response:
    webhooks: WebhookService = request.app.state.webhooks
    data = [endpoint_body(e) for e in await webhooks.list_endpoints(owner)]
    return json_response({"object": "list", "data": data})


@router.get("/v1/webhooks/deliveries", summary="The log of your webhook deliveries")
async def list_deliveries(
    request: Request,
    task_id: str | None = None,
    limit: str = "50",
    owner: str = Depends(current_owner),
) -> Response:
    webhooks: WebhookService = request.app.state.webhooks
    if not limit.isdigit() or not 1 <= int(limit) <= 100:
        raise InvalidParameter("limit must be an integer from 1 to 100", param="limit")
    found = await webhooks.deliveries(owner, task_id=task_id, limit=int(limit))
    return json_response({"object": "list", "data": [delivery_body(d) for d in found]})


@router.get(
    "/v1/webhooks/callback-secret", summary="The secret that signs your tasks' callback_url"
)
async def callback_secret(request: Request, owner: str = Depends(current_owner)) -> Response:
    webhooks: WebhookService = request.app.state.webhooks
    return json_response({"object": "webhook_secret", "secret": webhooks.callback_secret(owner)})


@router.delete("/v1/webhooks/{endpoint_id}", summary="Delete a webhook endpoint")
async def delete_endpoint(
    endpoint_id: str, request: Request, owner: str = Depends(current_owner)
) -> Response:
    webhooks: WebhookService = request.app.state.webhooks
    await webhooks.delete_endpoint(owner, endpoint_id)
    return json_response({"id": endpoint_id, "object": "webhook_endpoint.deleted", "deleted": True})
