"""A reelgate deployment in front of fake upstreams, for the providers' end-to-end tests.

``Deployment`` runs the API (``serve --workers 0``) and worker processes as real
subprocesses over one database and one storage (SQLite + a folder, or PostgreSQL +
an S3 server), with a configuration file routing models to fake upstreams that run
in this process (``tests.upstreams``). ``seed_loop`` polls a task the way CometAPI's
documentation does.
"""

from __future__ import annotations

import itertools
import secrets
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import av
import boto3
import httpx

from tests.pg import temporary_database
from tests.procs import Api, Proc, Worker, ready, spawn_api, spawn_worker, started
from tests.s3 import ACCESS_KEY, REGION, SECRET_KEY, aws_environ, s3_server

KEY_ENV = "TEST_UPSTREAM_KEY"  # the variable that holds the fake upstreams' key
ORDER = {"SUBMITTED": 0, "IN_PROGRESS": 1, "SUCCESS": 2, "FAILED": 2, "ERROR": 2}
TERMINAL = ("SUCCESS", "FAILED", "ERROR")
BUCKET = "reelgate-providers"


@contextmanager
def backend_settings(kind: str, root: Path) -> Iterator[dict[str, str]]:
    """The settings of one shared database and storage: ``sqlite`` or ``postgresql`` + S3."""
    common = {"REELGATE_SIGNING_SECRET": secrets.token_hex(32), "REELGATE_POLL_INTERVAL": "0.2"}
    if kind == "sqlite":
        shared = root / "shared"
        shared.mkdir(parents=True, exist_ok=True)
        yield {
            **common,
            "REELGATE_DATABASE_URL": f"sqlite:///{shared / 'reelgate.db'}",
            "REELGATE_STORAGE_URL": f"file://{shared / 'blobs'}",
        }
        return
    with temporary_database() as url, s3_server() as endpoint:
        s3 = boto3.client(
            "s3",
            endpoint_url=endpoint,
            region_name=REGION,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
        )
        s3.create_bucket(Bucket=BUCKET)
        yield {
            **common,
            **aws_environ(),
            "REELGATE_DATABASE_URL": url,
            "REELGATE_STORAGE_URL": f"s3://{BUCKET}/videos",
            "REELGATE_S3_ENDPOINT_URL": endpoint,
            "REELGATE_S3_REGION": REGION,
            "REELGATE_S3_ACCESS_KEY_ID": ACCESS_KEY,
            "REELGATE_S3_SECRET_ACCESS_KEY": SECRET_KEY,
        }


def write_config(path: Path, providers: dict[str, dict[str, Any]], routes: dict[str, list[str]],
                 **watch: float) -> Path:  # fmt: skip
    """Write a configuration file: ``providers`` by name, ``routes`` model -> provider names."""
    lines = []
    for name, options in providers.items():
        lines.append(f"[providers.{name}]")
        options = {"api_key_env": KEY_ENV, "timeout": 3, "connect_timeout": 1, **options}
        lines += [f"{key} = {_toml(value)}" for key, value in options.items()]
    lines.append("[watch]")
    watch = {"min_interval": 0.2, "max_interval": 1.0, "poller_ttl": 3, **watch}
    lines += [f"{key} = {_toml(value)}" for key, value in watch.items()]
    for model, names in routes.items():
        for name in names:
            lines += [f'[[routes."{model}"]]', f'provider = "{name}"']
    path.write_text("\n".join(lines) + "\n")
    return path


def _toml(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    return str(value)


@dataclass
class Deployment:
    """An API process and its workers, all torn down at the end of the test."""

    root: Path
    settings: dict[str, str]
    api: Api | None = None
    procs: list[Proc] = field(default_factory=list)
    counter: Iterator[int] = field(default_factory=itertools.count)

    def start_api(self) -> Api:
        self.api = ready(spawn_api(self.root / "api", self.settings))
        self.procs.append(self.api)
        return self.api

    def start_worker(self, name: str | None = None) -> Worker:
        name = name or f"worker{next(self.counter)}"
        worker = spawn_worker(self.root / name, self.settings, name=name, concurrency=2)
        self.procs.append(worker)
        return started(worker)

    @property
    def client(self) -> httpx.Client:
        assert self.api is not None
        headers = {"Authorization": f"Bearer {self.api.first_key()}"}
        return httpx.Client(base_url=self.api.base_url, headers=headers, timeout=30)

    def create(self, prompt: str, model: str = "doubao-seedance-2-0", **fields: Any) -> str:
        """Create a task as CometAPI's curl example does (multipart), return its id."""
        files = fields.pop("files", None)
        form = {"prompt": prompt, "model": model, "seconds": "4", "size": "16:9", **fields}
        multipart = {name: (None, str(value)) for name, value in form.items()}
        with self.client as client:
            response = client.post("/v1/videos", files={**multipart, **(files or {})})
        assert response.status_code == 200, response.text
        task_id: str = response.json()["id"]
        return task_id

    def stop(self) -> None:
        for proc in self.procs:
            proc.stop(timeout=10)


def seed_loop(client: httpx.Client, task_id: str, *, timeout: float) -> list[dict[str, Any]]:
    """Poll until a terminal status, as CometAPI advises; every answer seen, in order."""
    seen: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while True:
        response = client.get(f"/v1/videos/{task_id}")
        assert response.status_code == 200, response.text
        seen.append(response.json())
        if seen[-1]["status"] in TERMINAL:
            return seen
        assert time.monotonic() < deadline, f"{task_id} did not finish: {seen[-1]}"
        time.sleep(0.1)


def check_history(seen: list[dict[str, Any]]) -> None:
    """Statuses never move back and progress never goes down, as a client sees them."""
    for before, after in itertools.pairwise(seen):
        assert ORDER[after["status"]] >= ORDER[before["status"]], seen
        assert after["progress"] >= before["progress"], [s["progress"] for s in seen]


def decode(data: bytes, tmp: Path) -> tuple[int, int, int]:
    """Width, height and frame count of an MP4."""
    path = tmp / f"{secrets.token_hex(4)}.mp4"
    path.write_bytes(data)
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = sum(1 for _ in container.decode(stream))
        return stream.width, stream.height, frames


def wait_for(check: Callable[[], Any], *, timeout: float, what: str) -> Any:
    """Wait on a real condition (with a deadline), polling it every 50 ms."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)
