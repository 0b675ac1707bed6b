"""#16: the dashboard's page weight: bytes of HTML, CSS and JavaScript, requests per page.

A ``reelgate serve`` on SQLite (the instant renderer, so that 20 tasks finish at once)
with a user key that owns 20 SUCCESS tasks and an admin key. Each page is fetched as
a browser would fetch it after signing in: the HTML, then every style sheet and script
it links (``<link rel=stylesheet>``, ``<script src>``). Media (thumbnails, the video)
are counted as requests apart, not as page weight. The figure is the heaviest page;
the notes list each page's HTML, CSS and JS bytes, and their gzip size for a proxy
that compresses (reelgate itself sends them as they are). Target: every page under
64 KB in at most 3 requests before media (the HTML, one style sheet, one script).

Nothing here is timed, so the figures do not depend on the machine.

Run alone: ``python -m bench.dashboard``.
"""

from __future__ import annotations

import argparse
import gzip
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import httpx

from bench import options
from bench.report import Row
from bench.seed import MODEL
from bench.servers import create_key, running_server, server_env

TARGET_BYTES = 64 * 1024
TARGET_REQUESTS = 3
TASKS = 20
_ASSET = re.compile(r'<(?:link rel="stylesheet" href|script src)="([^"]+)"')
_MEDIA = re.compile(r'<(?:img|video)[^>]* src="([^"]+)"')
_TOKEN = re.compile(r'name="csrf" value="([^"]+)"')


@dataclass
class Weight:
    """What one page costs a browser that has nothing cached."""

    name: str
    html: int
    css: int
    js: int
    gzipped: int
    requests: int  # the HTML and its assets
    media: int  # images and videos the page shows

    @property
    def total(self) -> int:
        return self.html + self.css + self.js


def measure(args: argparse.Namespace) -> list[Row]:
    """Start a server, fill it, weigh each page."""
    with options.workdir() as work:
        data = work / "data"
        user = create_key(data)
        admin = _admin_key(data)
        settings = {"REELGATE_RENDERER": "instant", "REELGATE_WORKERS": "2"}
        with running_server(data, settings) as server:
            task_id = _fill(server.url, user)
            weights = [_weigh(httpx.Client(base_url=server.url), "sign-in", "/dashboard/signin")]
            with _signed_in(server.url, user) as client:
                weights.append(_weigh(client, "tasks (20 listed)", "/dashboard/tasks"))
                weights.append(_weigh(client, "task (SUCCESS)", f"/dashboard/tasks/{task_id}"))
            with _signed_in(server.url, admin) as client:
                for page in ("keys", "usage", "health"):
                    weights.append(_weigh(client, f"admin {page}", f"/dashboard/admin/{page}"))
    heaviest = max(weights, key=lambda weight: weight.total)
    holds = all(w.total <= TARGET_BYTES and w.requests <= TARGET_REQUESTS for w in weights)
    pages = "; ".join(
        f"{w.name}: {w.total / 1024:.1f} KB (HTML {w.html:,} B, CSS {w.css:,} B, JS {w.js:,} B; "
        f"gzip {w.gzipped / 1024:.1f} KB) in {w.requests} requests + {w.media} media"
        for w in weights
    )
    detail = (
        f"Each page as a browser with an empty cache fetches it (assets are then cached "
        f"for a day under content-hashed URLs). {pages}."
    )
    values = {f"{w.name.split(' (')[0]} bytes": float(w.total) for w in weights}
    values["heaviest_bytes"] = float(heaviest.total)
    return [
        Row(
            "16",
            "dashboard page weight (HTML + CSS + JS)",
            f"{heaviest.total / 1024:.1f} KB in {heaviest.requests} requests ({heaviest.name})",
            "—",
            None,
            f"≤ {TARGET_BYTES // 1024} KB in ≤ {TARGET_REQUESTS} requests per page",
            holds,
            detail,
            values,
        )
    ]


def _admin_key(data_dir: Path) -> str:
    command = [sys.executable, "-m", "reelgate", "keys", "create", "--owner", "ops", "--admin"]
    command += ["--data-dir", str(data_dir)]
    env = server_env(data_dir, 0, {})
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"reelgate keys create --admin failed:\n{done.stderr}")
    return done.stdout.strip().splitlines()[-1]


def _fill(base_url: str, key: str) -> str:
    """``TASKS`` finished tasks of the user; the id of the last."""
    headers = {"Authorization": f"Bearer {key}"}
    body = {"model": MODEL, "prompt": "a page-weight task", "seconds": "5"}
    with httpx.Client(base_url=base_url, headers=headers, timeout=30) as client:
        ids = [client.post("/v1/videos", json=body).json()["id"] for _ in range(TASKS)]
        for task_id in ids:
            answer = client.get(f"/v1/videos/{task_id}", params={"wait": "30"})
            if answer.json()["status"] != "SUCCESS":
                raise RuntimeError(f"task {task_id} did not finish: {answer.text}")
    return str(ids[-1])


class _signed_in:
    """A client with a dashboard session of ``key``."""

    def __init__(self, base_url: str, key: str) -> None:
        self.client = httpx.Client(base_url=base_url, timeout=30)
        token = _TOKEN.search(self.client.get("/dashboard/signin").text)
        assert token is not None
        answer = self.client.post("/dashboard/signin", data={"csrf": token[1], "key": key})
        if answer.status_code != 303:
            raise RuntimeError(f"signing in failed: {answer.status_code} {answer.text}")

    def __enter__(self) -> httpx.Client:
        return self.client

    def __exit__(self, *_: object) -> None:
        self.client.close()


def _weigh(client: httpx.Client, name: str, path: str) -> Weight:
    page = client.get(path)
    if page.status_code != 200:
        raise RuntimeError(f"{path} answered {page.status_code}")
    sizes = {"css": 0, "js": 0}
    squeezed = len(gzip.compress(page.content))
    assets = list(dict.fromkeys(_ASSET.findall(page.text)))
    for url in assets:
        asset = client.get(url.replace("&amp;", "&"))
        if asset.status_code != 200:
            raise RuntimeError(f"{url} answered {asset.status_code}")
        sizes["css" if ".css" in url else "js"] += len(asset.content)
        squeezed += len(gzip.compress(asset.content))
    media = len(set(_MEDIA.findall(page.text)))
    return Weight(
        name, len(page.content), sizes["css"], sizes["js"], squeezed, 1 + len(assets), media
    )


def main() -> None:
    """Run #16 and report it."""
    options.main(__doc__, measure)


if __name__ == "__main__":
    main()
