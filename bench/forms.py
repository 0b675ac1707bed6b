"""The create request as clients send it: multipart form fields, raw or through httpx."""

from __future__ import annotations

import secrets
from collections.abc import Mapping

import httpx

from bench.seed import MODEL, PROMPT


def fields(resolution: str = "720p", seconds: int = 5) -> dict[str, str]:
    """The form fields of a create: a 5 s 16:9 text-to-video task."""
    return {
        "prompt": PROMPT,
        "model": MODEL,
        "seconds": str(seconds),
        "size": "16:9",
        "resolution": resolution,
    }


def multipart(form: Mapping[str, str]) -> tuple[bytes, str]:
    """``form`` encoded as ``multipart/form-data`` (as curl ``-F`` sends it): body, type."""
    boundary = "------------------------" + secrets.token_hex(8)
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'
        for name, value in form.items()
    ]
    body = ("".join(parts) + f"--{boundary}--\r\n").encode()
    return body, f"multipart/form-data; boundary={boundary}"


async def create(client: httpx.AsyncClient, form: Mapping[str, str]) -> str:
    """POST one multipart create with ``client`` (base URL and key set); the task id."""
    response = await client.post("/v1/videos", files={name: (None, v) for name, v in form.items()})
    if response.status_code != 200:
        raise RuntimeError(f"create answered {response.status_code}: {response.text}")
    return str(response.json()["id"])


def client(base_url: str, key: str, *, connections: int = 16) -> httpx.AsyncClient:
    """An async client of the server at ``base_url`` with ``key``."""
    return httpx.AsyncClient(
        base_url=base_url,
        headers={"Authorization": f"Bearer {key}"},
        timeout=30,
        limits=httpx.Limits(max_connections=connections),
    )
