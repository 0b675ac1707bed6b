"""Rendering the dashboard's pages: the template environment, headers, static assets."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from functools import cache
from importlib import resources
from typing import Any
from urllib.parse import urlsplit

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from reelgate.settings import Settings

STATIC = {
    "dashboard.css": "text/css; charset=utf-8",
    "dashboard.js": "text/javascript; charset=utf-8",
}


@cache
def environment() -> Environment:
    """The templates of ``reelgate/dashboard/templates``, HTML-escaped, strict on names."""
    env = Environment(
        loader=PackageLoader("reelgate.dashboard", "templates"),
        autoescape=select_autoescape(default=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["when"] = when
    env.globals["asset"] = asset_url
    return env


def when(seconds: float | None) -> str:
    """Unix seconds as a UTC date and time (empty for None)."""
    if seconds is None:
        return ""
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


@cache
def asset(name: str) -> bytes:
    """The bytes of one of ``STATIC``, read once from the package."""
    return (resources.files("reelgate.dashboard") / "static" / name).read_bytes()


@cache
def asset_url(name: str) -> str:
    """The URL of a static asset, with its content hash: a new release is a new URL."""
    digest = hashlib.sha256(asset(name)).hexdigest()[:12]
    return f"/dashboard/static/{name}?v={digest}"


def security_headers(settings: Settings) -> dict[str, str]:
    """Headers of every page: nothing from other hosts, no framing, no caching."""
    media = "'self'"
    if settings.storage_url.startswith("s3://"):  # /content answers 302 to the bucket
        endpoint = settings.s3_public_endpoint_url or settings.s3_endpoint_url
        parts = urlsplit(endpoint)
        media += f" {parts.scheme}://{parts.netloc}" if parts.netloc else " https:"
    return {
        "Content-Security-Policy": (
            f"default-src 'self'; img-src {media}; media-src {media}; "
            "frame-ancestors 'none'; form-action 'self'; base-uri 'none'; object-src 'none'"
        ),
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "same-origin",
        "Cache-Control": "no-store",
    }


def render(
    request: Request, template: str, context: dict[str, Any], status_code: int = 200
) -> HTMLResponse:
    """A page: ``template`` over ``context``, with the security headers."""
    html = environment().get_template(template).render(**context)
    headers = security_headers(request.app.state.settings)
    return HTMLResponse(html, status_code=status_code, headers=headers)


def static(name: str) -> Response:
    """A static asset, cached for a day (its URL changes with its content)."""
    headers = {
        "Cache-Control": "public, max-age=86400, immutable",
        "X-Content-Type-Options": "nosniff",
    }
    return Response(asset(name), media_type=STATIC[name], headers=headers)
