"""``/docs``: an HTML page of the routes, whose assets come from the package (no CDN)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.server import LiveServer, start_server

ROOT = Path(__file__).resolve().parents[2]
HTML = {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}  # what a browser sends


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    live = start_server(Path(tmp_path_factory.mktemp("docs")), workers=0)
    yield live
    live.stop()


def urls(text: str) -> list[str]:
    return re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)""", text) + re.findall(
        r"""fetch\(\s*["']([^"']+)""", text
    )


def test_docs_is_an_html_page_with_local_assets_only(server: LiveServer) -> None:
    page = httpx.get(f"{server.base_url}/docs", headers=HTML)
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert page.headers["content-security-policy"].startswith("default-src 'self'")
    assets = [url for url in urls(page.text) if not url.startswith("#")]
    assert any(url.endswith(".js") for url in assets)
    texts = {"/docs": page.text}
    for url in assets:
        assert url.startswith("/") and not url.startswith("//"), f"not on this host: {url}"
        response = httpx.get(server.base_url + url)
        assert response.status_code == 200, url
        texts[url] = response.text
        for inner in urls(response.text):
            assert inner.startswith("/") and not inner.startswith("//"), (url, inner)
    for url, text in texts.items():
        assert not re.search(r"https?://", text), f"{url} names another host"
        assert "//cdn" not in text and "@import" not in text, url


def test_the_page_lists_the_routes_of_the_schema(server: LiveServer) -> None:
    script = next(
        url
        for url in urls(httpx.get(f"{server.base_url}/docs", headers=HTML).text)
        if url.endswith(".js")
    )
    assert '"/openapi.json"' in httpx.get(server.base_url + script).text
    schema = httpx.get(f"{server.base_url}/openapi.json").json()
    assert "/v1/videos/{task_id}" in schema["paths"] and "/v1/videos" in schema["paths"]
    assert "/docs" not in schema["paths"]


def test_api_clients_never_get_html(server: LiveServer) -> None:
    response = httpx.get(f"{server.base_url}/docs")  # Accept: */*
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
    unknown = httpx.get(f"{server.base_url}/docs/nothing.js")
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "not_found"


def test_the_assets_are_package_data() -> None:
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert '"api/static/*"' in pyproject
    static = ROOT / "src" / "reelgate" / "api" / "static"
    assert {"docs.html", "docs.js", "docs.css"} <= {p.name for p in static.iterdir()}
