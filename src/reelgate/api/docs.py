"""``/docs``: a page that lists the routes of ``/openapi.json``, with its assets in the package.

No CDN and no third-party script: the page, its script and its style sheet are small
files of our own (``api/static/``), served from the installed package, so the docs work
offline and the page loads nothing from another host (its Content-Security-Policy
says so to the browser too).

The page goes to clients that accept HTML (browsers); any other client gets the JSON
404 of an unknown route, so that an API client never receives HTML (API.md).
"""

from __future__ import annotations

from functools import cache
from importlib import resources

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from reelgate.api.errors import envelope

router = APIRouter(include_in_schema=False)

ASSETS = {
    "docs.html": "text/html; charset=utf-8",
    "docs.js": "text/javascript; charset=utf-8",
    "docs.css": "text/css; charset=utf-8",
}
HEADERS = {
    "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-cache",
}


@cache
def asset(name: str) -> bytes:
    """The bytes of one of ``ASSETS``, read once from the package."""
    return (resources.files("reelgate.api") / "static" / name).read_bytes()


def _no_route(path: str) -> JSONResponse:
    return envelope(404, f"no route for GET {path}", type_="not_found_error", code="not_found")


@router.get("/docs")
async def docs_page(request: Request) -> Response:
    if "text/html" not in request.headers.get("accept", "").lower():
        return _no_route("/docs")
    return Response(asset("docs.html"), media_type=ASSETS["docs.html"], headers=HEADERS)


@router.get("/docs/{name}")
async def docs_asset(name: str) -> Response:
    if name not in ASSETS:
        return _no_route(f"/docs/{name}")
    return Response(asset(name), media_type=ASSETS[name], headers=HEADERS)
