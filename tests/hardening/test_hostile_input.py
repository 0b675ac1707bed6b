"""Hostile input never gets a 5xx: text no store can hold, deep JSON, huge images, odd Ranges.

Every case runs against a real server on loopback, over SQLite and over PostgreSQL:
both stores must answer alike, because the input is refused before a store sees it.
"""

from __future__ import annotations

import io
import struct
import threading
import time
import zlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from PIL import Image

from reelgate.domain.errors import ReelgateError, TaskNotFound, Unavailable
from reelgate.services import images
from tests.pg import temporary_database
from tests.server import LiveServer, start_server

MODEL = "doubao-seedance-2-0"
JSON = {"content-type": "application/json"}


@pytest.fixture(
    scope="module",
    params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)],
)
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    data_dir = Path(tmp_path_factory.mktemp(f"hostile-{request.param}"))
    if request.param == "sqlite":
        live = start_server(data_dir, workers=0)
        yield live
        live.stop()
        return
    with temporary_database() as url:
        live = start_server(data_dir, workers=0, database_url=url)
        yield live
        live.stop()


@pytest.fixture
def client(server: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.base_url, headers=server.headers(), timeout=60) as c:
        yield c


def assert_error(
    response: httpx.Response, status: int, code: str | None, param: str | None = None
) -> dict[str, object]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert (error["code"], error["param"]) == (code, param)
    assert error["message"]
    return error  # type: ignore[no-any-return]


def png(width: int = 64, height: int = 48) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (20, 140, 90)).save(out, "PNG")
    return out.getvalue()


def huge_png(width: int, height: int) -> bytes:
    """A valid RGB PNG of ``width`` x ``height`` black pixels, made row by row (small)."""

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    row = bytes(1 + width * 3)  # filter type 0, then the pixels
    deflate = zlib.compressobj(9)
    data = b"".join(deflate.compress(row) for _ in range(height)) + deflate.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b"")
    )


@pytest.fixture(scope="module")
def png_40mp() -> bytes:
    return huge_png(8000, 5000)


def stored_inputs(server: LiveServer) -> list[Path]:
    folder = server.components.blobs.local_path("inputs")
    assert folder is not None
    return sorted(folder.iterdir()) if folder.is_dir() else []


# text no store can hold -------------------------------------------------------------


def test_a_lone_surrogate_in_json(client: httpx.Client) -> None:
    body = b'{"prompt": "a\\ud800b", "model": "%s"}' % MODEL.encode()
    error = assert_error(
        client.post("/v1/videos", content=body, headers=JSON), 400, "InvalidParameter", "prompt"
    )
    assert "surrogate" in str(error["message"])
    body = b'{"prompt": "a", "model": "%s", "size": "\\udfff"}' % MODEL.encode()
    assert_error(
        client.post("/v1/videos", content=body, headers=JSON), 400, "InvalidParameter", "size"
    )
    # a key of such text, echoed in the message and in param, still makes valid JSON
    body = b'{"prompt": "a", "model": "%s", "\\ud800": 1}' % MODEL.encode()
    assert_error(
        client.post("/v1/videos", content=body, headers=JSON), 400, "InvalidParameter", "\\ud800"
    )
    body = b'{"\\ud800": 1, "\\ud800": 2}'
    assert_error(
        client.post("/v1/videos", content=body, headers=JSON), 400, "InvalidParameter", "\\ud800"
    )


def test_a_nul_in_a_prompt_in_every_body_type(client: httpx.Client) -> None:
    fields = {"prompt": "a\x00b", "model": MODEL}
    for response in (
        client.post("/v1/videos", json=fields),
        client.post("/v1/videos", data=fields),
        client.post("/v1/videos", files={k: (None, v) for k, v in fields.items()}),
    ):
        assert_error(response, 400, "InvalidParameter", "prompt")
    assert_error(
        client.post("/v1/videos", json={**fields, "prompt": "a", "model": "x\x00"}),
        400,
        "InvalidParameter",
        "model",
    )


def test_a_task_id_no_store_can_hold_is_unknown(server: LiveServer, client: httpx.Client) -> None:
    for path in ("/v1/videos/task_%00x", "/v1/videos/%00", "/v1/videos/task_%ED%A0%80x"):
        error = assert_error(client.get(path), 400, "task_not_exist")
        assert error["message"] == "task_not_exist"
    # a lone surrogate cannot come through a URL (servers decode it to U+FFFD): the
    # service and the store answer it as an unknown id all the same
    with pytest.raises(TaskNotFound):
        server.call(server.components.tasks.get("alice", "task_\ud800x"))
    for task_id in ("task_\ud800x", "task_\x00x"):
        assert server.call(server.components.store.get_task(task_id)) is None


def test_json_nested_100000_levels(client: httpx.Client) -> None:
    for body in (
        b"[" * 100_000 + b"]" * 100_000,
        b'{"prompt": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
        b'{"a":' * 100_000 + b"1" + b"}" * 100_000,
    ):
        error = assert_error(
            client.post("/v1/videos", content=body, headers=JSON), 400, "invalid_request"
        )
        assert "nested too deeply" in str(error["message"])


def test_a_valid_create_still_works(client: httpx.Client) -> None:
    response = client.post("/v1/videos", json={"prompt": "ünïcödé 🎬\ttab", "model": MODEL})
    assert response.status_code == 200, response.text
    video = client.get(f"/v1/videos/{response.json()['id']}").json()
    assert video["status"] == "SUBMITTED"


# a refused create stores nothing ---------------------------------------------------------


def test_a_refused_create_leaves_no_image(server: LiveServer, client: httpx.Client) -> None:
    before = stored_inputs(server)
    image = ("cat.png", png(), "image/png")
    refused = [
        {"prompt": (None, "a\x00"), "model": (None, MODEL), "input_reference": image},
        {
            "prompt": (None, "a"),
            "model": (None, MODEL),
            "seconds": (None, "99"),
            "input_reference": image,
        },
        {
            "prompt": (None, "a"),
            "model": (None, MODEL),
            "input_reference": ("big.png", huge_png(6001, 16), "image/png"),
        },
    ]
    for files in refused:
        assert client.post("/v1/videos", files=files).status_code == 400
    assert stored_inputs(server) == before

    store = server.components.store
    original = store.create_task

    async def failing(task: object) -> None:
        raise Unavailable("the database is away")

    store.create_task = failing  # type: ignore[method-assign]
    try:
        files = {"prompt": (None, "a"), "model": (None, MODEL), "input_reference": image}
        assert_error(client.post("/v1/videos", files=files), 503, "service_unavailable")
    finally:
        store.create_task = original  # type: ignore[method-assign]
    assert stored_inputs(server) == before
    created = client.post("/v1/videos", files=files)
    assert created.status_code == 200, created.text
    assert len(stored_inputs(server)) == len(before) + 1


# bounded image decoding ------------------------------------------------------------------


def test_images_over_the_pixel_limits_are_refused(client: httpx.Client, png_40mp: bytes) -> None:
    for data in (png_40mp, huge_png(6001, 100), huge_png(100, 6001)):
        files = {
            "prompt": (None, "a"),
            "model": (None, MODEL),
            "input_reference": ("big.png", data, "image/png"),
        }
        error = assert_error(
            client.post("/v1/videos", files=files), 400, "InvalidParameter", "input_reference"
        )
        assert "6000 pixels a side" in str(error["message"])
    started = time.perf_counter()
    with pytest.raises(ReelgateError):
        images.check_image(png_40mp, 10 * 1024 * 1024)
    assert time.perf_counter() - started < 0.5  # refused from the header, nothing decoded


def rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS in /proc/self/status")


def test_parallel_huge_images_keep_memory_flat(server: LiveServer, png_40mp: bytes) -> None:
    assert len(png_40mp) < 200_000  # a small file that declares 40 megapixels

    def post(_: int) -> httpx.Response:
        files = {
            "prompt": (None, "a"),
            "model": (None, MODEL),
            "input_reference": ("big.png", png_40mp, "image/png"),
        }
        return httpx.post(
            f"{server.base_url}/v1/videos", files=files, headers=server.headers(), timeout=60
        )

    post(0)  # warm up: imports, buffers
    baseline = peak = rss_bytes()
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, rss_bytes())
            time.sleep(0.002)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        with ThreadPoolExecutor(12) as pool:
            responses = list(pool.map(post, range(12)))
    finally:
        done.set()
        sampler.join()
    for response in responses:
        assert_error(response, 400, "InvalidParameter", "input_reference")
    assert peak - baseline < 150 * 1024 * 1024, f"RSS grew by {(peak - baseline) >> 20} MiB"


# Range answers -----------------------------------------------------------------------------

CONTENT = bytes(range(256)) * 4  # 1024 bytes


@pytest.fixture(scope="module")
def file_url(server: LiveServer) -> str:
    key = "videos/task_rangetest.1.mp4"
    server.call(server.components.blobs.put_bytes(key, CONTENT))
    return server.components.tasks.blob_url(key)


SIZE = len(CONTENT)


@pytest.mark.parametrize(
    ("header", "status", "span"),
    [
        ("bytes=0-0", 206, (0, 1)),
        ("bytes=10-19", 206, (10, 20)),
        ("bytes=1000-5000", 206, (1000, SIZE)),
        ("bytes=1000-", 206, (1000, SIZE)),
        ("bytes=-10", 206, (SIZE - 10, SIZE)),
        ("bytes=-5000", 206, (0, SIZE)),
        ("BYTES = 10-19 ,", 206, (10, 20)),
        ("bytes=1-2,999999-", 200, None),  # several ranges: the whole file
        ("bytes=0-1,5-2", 200, None),
        ("bytes=0-1,2-3", 200, None),
        ("bytes=5-2", 200, None),  # an invalid range-spec: the header is ignored
        ("bytes=abc", 200, None),
        ("bytes=", 200, None),
        ("bytes=-", 200, None),
        ("bytes=1-2-3", 200, None),
        ("bytes=\u00b2-3", 200, None),
        ("items=0-1", 200, None),
        ("0-1", 200, None),
        ("bytes=1024-", 416, None),
        ("bytes=999999-", 416, None),
        ("bytes=-0", 416, None),
        ("bytes=" + "9" * 5000 + "-", 416, None),
    ],
    ids=lambda value: value[:24] if isinstance(value, str) else None,
)
def test_range_answers(
    file_url: str, header: str, status: int, span: tuple[int, int] | None
) -> None:
    for method in ("GET", "HEAD"):
        response = httpx.request(method, file_url, headers={"Range": header.encode("latin-1")})
        assert response.status_code == status, (method, header, response.text)
        if status == 416:
            assert response.headers["content-range"] == f"bytes */{SIZE}"
            assert response.headers["content-type"].startswith("application/json")
            if method == "GET":
                assert_error(response, 416, "range_not_satisfiable")
            continue
        first, end = span or (0, SIZE)
        assert response.headers["content-length"] == str(end - first)
        if method == "GET":
            assert response.content == CONTENT[first:end]
        if status == 206:
            assert response.headers["content-range"] == f"bytes {first}-{end - 1}/{SIZE}"
        else:
            assert "content-range" not in response.headers


def test_if_range_that_does_not_match_sends_everything(file_url: str) -> None:
    etag = httpx.head(file_url).headers["etag"]
    same = httpx.get(file_url, headers={"Range": "bytes=0-9", "If-Range": etag})
    assert same.status_code == 206 and same.content == CONTENT[:10]
    for header in ("bytes=0-9", "bytes=999999-"):
        other = httpx.get(file_url, headers={"Range": header, "If-Range": '"other"'})
        assert other.status_code == 200 and other.content == CONTENT
