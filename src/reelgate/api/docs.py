"""``/docs``: a page that lists the routes of ``/openapi.json``, with its assets in the package.

No CDN and no third-party script: the page, its script and its style sheet are small
files of our own (``api/static/``), served from the installed package, so the docs work
offline and the page loads nothing from another host (its Content-Security-Policy
says so to the browser too).
"""

from __future__ import annotations

from functools import cache
from importlib import resources

from fastapi import APIRouter
from fastapi.responses import Response

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


@router.get("/docs")
async def docs_page() -> Response:
    return Response(asset("docs.html"), media_type=ASSETS["docs.html"], headers=HEADERS)


@router.get("/docs/{name}")
async def docs_asset(name: str) -> Response:
    if name not in ASSETS:
        return envelope(
            404, f"no route for GET /docs/{name}", type_="not_found_error", code="not_found"
        )
    return Response(asset(name), media_type=ASSETS[name], headers=HEADERS)
