"""Every error case of API.md's table, through a real server on loopback."""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from PIL import Image

from reelgate.domain.catalog import SEEDANCE
from reelgate.services.tasks import LINK_STEP
from tests.fakes import ScriptedRenderer
from tests.server import LiveServer, start_server

MODEL = "doubao-seedance-2-0"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    renderer = ScriptedRenderer()
    live = start_server(
        Path(tmp_path_factory.mktemp("errors")),
        max_upload_bytes=64 * 1024,
        renderers={spec.id: renderer for spec in SEEDANCE},
    )
    yield live
    live.stop()


@pytest.fixture
def client(server: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.base_url, headers=server.headers(), timeout=30) as c:
        yield c


def png(width: int = 64, height: int = 48) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (200, 40, 90)).save(out, "PNG")
    return out.getvalue()


def assert_error(
    response: httpx.Response, status: int, code: str | None, param: str | None = None
) -> dict[str, object]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert response.headers["x-request-id"]
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["code"] == code and error["param"] == param
    assert error["message"]
    return error  # type: ignore[no-any-return]


def form(**fields: str) -> dict[str, tuple[None, str]]:
    return {name: (None, value) for name, value in fields.items()}


@pytest.mark.parametrize(
    ("fields", "code", "param"),
    [
        ({"model": MODEL}, "MissingParameter", "prompt"),
        ({"prompt": "a cat"}, "MissingParameter", "model"),
        ({"prompt": "a cat", "model": "nope"}, "InvalidParameter", "model"),
        ({"prompt": "a cat", "model": MODEL, "seconds": "99"}, "InvalidParameter", "seconds"),
        ({"prompt": "a cat", "model": MODEL, "seconds": "five"}, "InvalidParameter", "seconds"),
        ({"prompt": "a cat", "model": MODEL, "size": "0x0"}, "InvalidParameter", "size"),
        ({"prompt": "a cat", "model": MODEL, "resolution": "4k"}, "InvalidParameter", "resolution"),
        ({"prompt": "a cat", "model": MODEL, "style": "noir"}, "InvalidParameter", "style"),
    ],
)
def test_parameter_errors(
    client: httpx.Client, fields: dict[str, str], code: str, param: str
) -> None:
    error = assert_error(client.post("/v1/videos", files=form(**fields)), 400, code, param)
    assert error["type"] == "invalid_request_error"
    assert_error(client.post("/v1/videos", json=fields), 400, code, param)
    assert_error(client.post("/v1/videos", data=fields), 400, code, param)


def test_messages_list_what_is_allowed(client: httpx.Client) -> None:
    response = client.post("/v1/videos", json={"prompt": "a", "model": MODEL, "seconds": 3})
    assert "4 to 15" in str(assert_error(response, 400, "InvalidParameter", "seconds")["message"])
    response = client.post("/v1/videos", json={"prompt": "a", "model": MODEL, "size": "2:1"})
    assert "21:9, 16:9, 4:3, 1:1, 3:4, 9:16" in str(response.json()["error"]["message"])


def test_image_on_a_text_only_model(client: httpx.Client) -> None:
    files = {
        **form(prompt="a cat", model="doubao-seedance-1-0-pro"),
        "input_reference": ("cat.png", png(), "image/png"),
    }
    error = assert_error(
        client.post("/v1/videos", files=files), 400, "InvalidParameter", "input_reference"
    )
    assert error["message"] == (
        "the specified task_type r2v does not support model doubao-seedance-1-0-pro"
    )


def test_a_non_image_is_refused(client: httpx.Client) -> None:
    files = {
        **form(prompt="a cat", model=MODEL),
        "input_reference": ("cat.png", b"not an image at all", "image/png"),
    }
    assert_error(client.post("/v1/videos", files=files), 400, "InvalidParameter", "input_reference")
    truncated = png()[:60]
    files["input_reference"] = ("cat.png", truncated, "image/png")
    assert_error(client.post("/v1/videos", files=files), 400, "InvalidParameter", "input_reference")


def test_too_large_and_wrong_media_type(client: httpx.Client) -> None:
    # the test server allows 64 KiB uploads: refused by Content-Length, and while streaming
    files = {
        **form(prompt="a cat", model=MODEL),
        "input_reference": ("big.png", b"x" * 200_000, "image/png"),
    }
    assert_error(client.post("/v1/videos", files=files), 413, "payload_too_large")

    def chunks() -> Iterator[bytes]:
        yield b'{"prompt": "'
        for _ in range(100):
            yield b"x" * 4096
        yield b'", "model": "doubao-seedance-2-0"}'

    response = client.post(
        "/v1/videos", content=chunks(), headers={"content-type": "application/json"}
    )
    assert "content-length" not in response.request.headers
    assert_error(response, 413, "payload_too_large")
    files["input_reference"] = ("mid.png", b"x" * 70_000, "image/png")  # under the body limit
    assert_error(client.post("/v1/videos", files=files), 413, "payload_too_large")
    response = client.post(
        "/v1/videos", content=b"prompt=a", headers={"content-type": "text/plain"}
    )
    assert_error(response, 415, "unsupported_media_type")
    response = client.post(
        "/v1/videos", content=b"{nope", headers={"content-type": "application/json"}
    )
    assert_error(response, 400, "invalid_request")


def test_authentication(server: LiveServer) -> None:
    url = f"{server.base_url}/v1/videos/task_x"
    for headers, needle in [
        ({}, "missing"),
        ({"Authorization": "Basic abc"}, "malformed"),
        ({"Authorization": "Bearer rg_wrong"}, "invalid"),
    ]:
        error = assert_error(httpx.get(url, headers=headers), 401, "invalid_api_key")
        assert needle in str(error["message"])
    secret = server.key_for("revokee")
    key = next(k for k in server.call(server.components.keys.list()) if k.owner == "revokee")
    server.call(server.components.keys.revoke(key.id))
    error = assert_error(
        httpx.get(url, headers={"Authorization": f"Bearer {secret}"}), 401, "invalid_api_key"
    )
    assert "revoked" in str(error["message"])


def test_unknown_task_and_other_owners_task(server: LiveServer, client: httpx.Client) -> None:
    error = assert_error(client.get("/v1/videos/task_doesnotexist"), 400, "task_not_exist")
    assert error["message"] == "task_not_exist"
    created = client.post("/v1/videos", files=form(prompt="mine", model=MODEL)).json()
    response = httpx.get(
        f"{server.base_url}/v1/videos/{created['id']}", headers=server.headers("mallory")
    )
    assert_error(response, 400, "task_not_exist")


def test_unknown_route_and_method(client: httpx.Client) -> None:
    assert_error(client.get("/v2/nothing"), 404, "not_found")
    assert_error(client.delete("/v1/models"), 405, "method_not_allowed")


def test_request_id_is_echoed(client: httpx.Client) -> None:
    response = client.get("/v1/models", headers={"X-Request-Id": "trace-123"})
    assert response.headers["x-request-id"] == "trace-123"
    ids = {client.get("/v1/models").headers["x-request-id"] for _ in range(3)}
    assert len(ids) == 3


def test_unexpected_errors_hide_the_traceback(server: LiveServer, client: httpx.Client) -> None:
    tasks = server.components.tasks

    async def explode(owner: str, task_id: str) -> None:
        raise RuntimeError("secret internals")

    original = tasks.get
    tasks.get = explode  # type: ignore[method-assign]
    try:
        response = client.get("/v1/videos/task_x")
    finally:
        tasks.get = original  # type: ignore[method-assign]
    error = assert_error(response, 500, "internal_error")
    assert response.headers["x-request-id"] in str(error["message"])
    assert "secret internals" not in response.text and "Traceback" not in response.text


def test_signed_links(server: LiveServer, client: httpx.Client) -> None:
    created = client.post("/v1/videos", files=form(prompt="links", model=MODEL)).json()
    deadline = time.monotonic() + 30  # the scripted render takes milliseconds; CI may be slow
    while (video := client.get(f"/v1/videos/{created['id']}").json())["status"] != "SUCCESS":
        assert video["status"] in ("SUBMITTED", "IN_PROGRESS"), video
        assert time.monotonic() < deadline, f"the task did not finish in 30 s: {video}"
        time.sleep(0.01)
    url = video["video_url"]
    assert httpx.get(url).status_code == 200
    assert_error(httpx.get(url.replace("signature=", "signature=x")), 403, "forbidden")
    assert_error(httpx.get(url.replace("expires=", "expires=1")), 403, "forbidden")
    assert_error(httpx.get(url.split("?")[0]), 403, "forbidden")
    path = url.split("?")[0].removeprefix(server.base_url)
    expired = server.components.signer.sign(server.base_url, path, 1_000_000)
    error = assert_error(httpx.get(expired), 403, "forbidden")
    assert "expired" in str(error["message"])
    # the URL lifetime is the configured one, rounded up to the link step
    lifetime = video["expires_at"] - video["completed_at"]
    assert lifetime <= server.settings.url_ttl + LINK_STEP + 5


def test_odd_inputs_get_400_not_500(client: httpx.Client, server: LiveServer) -> None:
    for seconds in ("²", "+-5", "9" * 5000):
        response = client.post(
            "/v1/videos", data={"prompt": "a", "model": MODEL, "seconds": seconds}
        )
        assert_error(response, 400, "InvalidParameter", "seconds")
    response = client.post(
        "/v1/videos",
        content=b'{"prompt": "a", "model": "nope", "model": "' + MODEL.encode() + b'"}',
        headers={"content-type": "application/json"},
    )
    assert_error(response, 400, "InvalidParameter", "model")
    for expires in ("²", "9" * 5000):
        url = f"{server.base_url}/files/videos/x/1.mp4?expires={expires}&signature=abc"
        assert_error(httpx.get(url), 403, "forbidden")


def test_empty_input_reference_means_none(client: httpx.Client) -> None:
    response = client.post(
        "/v1/videos", data={"prompt": "a", "model": MODEL, "input_reference": ""}
    )
    assert response.status_code == 200, response.text
    response = client.post(
        "/v1/videos", json={"prompt": "a", "model": MODEL, "input_reference": None}
    )
    assert response.status_code == 200, response.text


def test_a_json_image_near_the_limit_fits(client: httpx.Client) -> None:
    import base64
    import os

    image = Image.frombytes("RGB", (150, 140), os.urandom(150 * 140 * 3))
    out = io.BytesIO()
    image.save(out, "PNG")
    data = out.getvalue()
    assert 56 * 1024 < len(data) < 64 * 1024  # under the server's 64 KiB image limit
    url = "data:image/png;base64," + base64.b64encode(data).decode()
    response = client.post(
        "/v1/videos", json={"prompt": "a", "model": MODEL, "input_reference": url}
    )
    assert response.status_code == 200, response.text
