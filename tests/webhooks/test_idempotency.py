"""``Idempotency-Key`` on ``POST /v1/videos``, on a real server over SQLite and PostgreSQL.

Fifty identical requests in parallel make exactly one task (the primary key of
``idempotency_keys`` decides), and every one of them answers with it.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from tests.pg import temporary_database
from tests.server import LiveServer, start_server

MODEL = "doubao-seedance-1-0-pro"
BODY = {"prompt": "a red fox", "model": MODEL, "seconds": 2, "resolution": "480p"}


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    folder = Path(tmp_path_factory.mktemp("idempotency"))
    if request.param == "sqlite":
        live = start_server(folder, renderer="instant")
        yield live
        live.stop()
        return
    with temporary_database() as url:
        live = start_server(folder, renderer="instant", database_url=url)
        yield live
        live.stop()


def count_tasks(server: LiveServer, owner: str) -> int:
    url = server.settings.database_url
    if url.startswith("sqlite:///"):
        with sqlite3.connect(url.removeprefix("sqlite:///")) as conn:
            return int(
                conn.execute("SELECT COUNT(*) FROM tasks WHERE owner = ?", (owner,)).fetchone()[0]
            )
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT COUNT(*) FROM tasks WHERE owner = %s", (owner,)).fetchone()
        assert row is not None
        return int(row[0])


def post(server: LiveServer, owner: str, key: str | None, **extra: Any) -> httpx.Response:
    headers = server.headers(owner)
    if key is not None:
        headers["Idempotency-Key"] = key
    body = {**BODY, **extra}
    return httpx.post(f"{server.base_url}/v1/videos", json=body, headers=headers, timeout=30)


def test_fifty_parallel_duplicates_make_one_task(server: LiveServer) -> None:
    owner = "idem-parallel"
    headers = {**server.headers(owner), "Idempotency-Key": "order-42"}

    async def burst() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=server.base_url, timeout=60) as client:
            return await asyncio.gather(
                *(client.post("/v1/videos", json=BODY, headers=headers) for _ in range(50))
            )

    responses = asyncio.run(burst())
    assert [r.status_code for r in responses] == [200] * 50, [r.text for r in responses]
    assert len({r.json()["id"] for r in responses}) == 1
    assert len({r.content for r in responses}) == 1  # the same answer, byte for byte
    assert sum(r.headers.get("idempotent-replayed") == "true" for r in responses) == 49
    assert count_tasks(server, owner) == 1


def test_replay_different_request_and_other_owner(server: LiveServer) -> None:
    first = post(server, "idem-a", "k-1")
    assert first.status_code == 200 and "idempotent-replayed" not in first.headers
    again = post(server, "idem-a", "k-1", seconds="2")  # the same request, parsed
    assert again.status_code == 200 and again.content == first.content
    assert again.headers["idempotent-replayed"] == "true"
    other = post(server, "idem-a", "k-1", prompt="a blue fox")
    assert other.status_code == 409, other.text
    error = other.json()["error"]
    assert error["code"] == "idempotency_key_reused" and error["param"] == "Idempotency-Key"
    assert post(server, "idem-a", "k-1", callback_url="http://8.8.8.8/x").status_code == 409
    elsewhere = post(server, "idem-b", "k-1")  # keys are per owner
    assert elsewhere.status_code == 200 and elsewhere.json()["id"] != first.json()["id"]
    assert post(server, "idem-a", "k-2").json()["id"] != first.json()["id"]
    assert count_tasks(server, "idem-a") == 2


def test_image_bytes_are_part_of_the_request(server: LiveServer, tmp_path: Path) -> None:
    from PIL import Image

    images = []
    for color in ("red", "blue"):
        path = tmp_path / f"{color}.png"
        Image.new("RGB", (64, 64), color).save(path)
        images.append(path.read_bytes())
    headers = {**server.headers("idem-image"), "Idempotency-Key": "with-image"}
    fields = {"prompt": "p", "model": "doubao-seedance-2-0-fast", "seconds": "4"}

    def send(image: bytes) -> httpx.Response:
        files = {"input_reference": ("in.png", image, "image/png")}
        return httpx.post(
            f"{server.base_url}/v1/videos", data=fields, files=files, headers=headers, timeout=30
        )

    first = send(images[0])
    assert first.status_code == 200, first.text
    assert send(images[0]).json()["id"] == first.json()["id"]
    assert send(images[1]).status_code == 409


@pytest.mark.parametrize("key", ["", "a" * 256, "has space", "tab\there", "caf\u00e9"])
def test_bad_keys_are_refused(server: LiveServer, key: str) -> None:
    headers = {**server.headers("idem-bad"), "Idempotency-Key": key}
    response = httpx.post(
        f"{server.base_url}/v1/videos",
        json=BODY,
        headers={k: v.encode("latin-1") for k, v in headers.items()},  # type: ignore[misc]
    )
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "InvalidParameter" and error["param"] == "Idempotency-Key"
    assert count_tasks(server, "idem-bad") == 0


def test_a_refused_request_does_not_take_the_key(server: LiveServer) -> None:
    assert post(server, "idem-refused", "k", seconds=99).status_code == 400
    response = post(server, "idem-refused", "k")
    assert response.status_code == 200 and "idempotent-replayed" not in response.headers
    assert post(server, "idem-refused", "k", seconds=3).status_code == 409
