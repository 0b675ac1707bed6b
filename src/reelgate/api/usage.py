"""Usage routes: an owner's own (any key), and every owner's (an admin key)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from reelgate.api.auth import current_admin
from reelgate.api.videos import current_owner, json_response
from reelgate.domain.task import ApiKey
from reelgate.services.usage import UsageService

router = APIRouter(tags=["Usage"])

_FROM = Query(
    None, alias="from", description="the first UTC day, YYYY-MM-DD (default: 29 days before to)"
)
_TO = Query(None, alias="to", description="the last UTC day, YYYY-MM-DD (default: today)")
_MODEL = Query(None, description="only this model")


@router.get("/v1/usage", summary="Usage of the caller's owner per model (SUCCESS tasks only)")
async def own_usage(
    request: Request,
    owner: str = Depends(current_owner),
    start: str | None = _FROM,
    end: str | None = _TO,
    model: str | None = _MODEL,
) -> Response:
    usage: UsageService = request.app.state.usage
    first, last = usage.parse_range(start, end)
    report = await usage.report(start=first, end=last, owner=owner, model=model)
    return json_response(report.as_json())


@router.get("/v1/admin/usage", summary="Admin: usage of every owner per model")
async def all_usage(
    request: Request,
    admin: ApiKey = Depends(current_admin),
    start: str | None = _FROM,
    end: str | None = _TO,
    owner: str | None = Query(None, description="only this owner"),
    model: str | None = _MODEL,
) -> Response:
    usage: UsageService = request.app.state.usage
    first, last = usage.parse_range(start, end)
    report = await usage.report(start=first, end=last, owner=owner, model=model)
    return json_response(report.as_json())
