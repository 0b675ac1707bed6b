"""What the fault tests share: databases, a deployment, the process tree, a small disk."""

from __future__ import annotations

import contextlib
import errno
import os
import re
import sqlite3
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from tests.procs import Api, ready, spawn_api

MODEL = "doubao-seedance-1-0-pro"
TERMINAL = {"SUCCESS", "FAILED", "ERROR"}
# The scratch file of a render: <worker id>.<task id>.<attempt>.mp4
_SCRATCH = re.compile(r"\.(task_[A-Za-z0-9_-]+)\.\d+\.mp4$")


@dataclass
class Db:
    """Read access to a deployment's database, SQLite file or PostgreSQL."""

    url: str

    def rows(self, query: str, *params: Any) -> list[tuple[Any, ...]]:
        """``query`` with ``%s`` placeholders (rewritten for SQLite)."""
        if self.url.startswith("sqlite:///"):
            path = self.url.removeprefix("sqlite:///")
            with contextlib.closing(sqlite3.connect(path, timeout=30)) as conn:
                return conn.execute(query.replace("%s", "?"), params).fetchall()
        with psycopg.connect(self.url, autocommit=True) as conn:
            return conn.execute(query, params).fetchall()

    def column(self, name: str) -> dict[str, Any]:
        """Task id -> the value of column ``name``, for every task."""
        return {task_id: value for task_id, value in self.rows(f"SELECT id, {name} FROM tasks")}

    def details(self, task_id: str) -> list[str | None]:
        query = "SELECT detail FROM task_events WHERE task_id = %s ORDER BY seq"
        return [detail for (detail,) in self.rows(query, task_id)]


def start_server(data_dir: Path, database_url: str, *, workers: int, **settings: str) -> Api:
    """``reelgate serve`` with ``workers`` embedded renders, ready; ``settings`` as env."""
    env = {
        "REELGATE_DATABASE_URL": database_url,
        "REELGATE_LOG_LEVEL": "info",
        "REELGATE_POLL_INTERVAL": "0.3",
        **settings,
    }
    return ready(spawn_api(data_dir, env, workers=workers))


def client(api: Api) -> httpx.Client:
    headers = {"Authorization": f"Bearer {api.first_key()}"}
    return httpx.Client(base_url=api.base_url, headers=headers, timeout=30)


def create(http: httpx.Client, n: int) -> str:
    """A small task: 2 s of 480p."""
    data = {"prompt": f"fault {n}", "model": MODEL, "seconds": "2", "resolution": "480p"}
    response = http.post("/v1/videos", data=data)
    assert response.status_code == 200, response.text
    return str(response.json()["id"])


def videos(http: httpx.Client, ids: list[str]) -> dict[str, dict[str, Any]]:
    """Each task as a client sees it (the JSON of ``GET /v1/videos/{id}``)."""
    found = {}
    for task_id in ids:
        response = http.get(f"/v1/videos/{task_id}")
        assert response.status_code == 200, response.text
        found[task_id] = response.json()
    return found


# The process tree, from /proc ---------------------------------------------------------


def _stat(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text.rsplit(")", 1)[1].split()  # after the command name, which may hold spaces


def gone(pid: int) -> bool:
    """Whether ``pid`` has exited (a zombie has: it only waits to be reaped)."""
    fields = _stat(pid)
    return fields is None or fields[0] in ("Z", "X")


def children(pid: int) -> set[int]:
    """The live child processes of ``pid``."""
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _stat(int(entry.name))
            if fields is not None and int(fields[1]) == pid and fields[0] not in ("Z", "X"):
                found.add(int(entry.name))
    return found


def descendants(pid: int) -> set[int]:
    """Every live process below ``pid``."""
    found: set[int] = set()
    todo = [pid]
    while todo:
        for child in children(todo.pop()) - found:
            found.add(child)
            todo.append(child)
    return found


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def render_children(pid: int) -> set[int]:
    """The preview render processes of ``pid`` (spawned children, not its resource tracker)."""
    return {child for child in children(pid) if "spawn_main" in cmdline(child)}


def rendering(pid: int) -> str | None:
    """The task whose scratch video the process ``pid`` has open, if any."""
    with contextlib.suppress(OSError):
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            with contextlib.suppress(OSError):
                match = _SCRATCH.search(os.readlink(fd))
                if match:
                    return match.group(1)
    return None


# A small disk ----------------------------------------------------------------------


@contextlib.contextmanager
def small_disk(path: Path, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` mounted at ``path`` (needs root); skips the test if refused."""
    path.mkdir(parents=True, exist_ok=True)
    mount = ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(path)]
    done = subprocess.run(mount, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True, check=False)


def fill(folder: Path) -> Path:
    """Write a file into ``folder`` until its file system is full; the file."""
    filler = folder / "filler"
    chunk = b"\0" * 65536
    with open(filler, "wb", buffering=0) as out:
        while True:
            try:
                out.write(chunk)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC, exc
                return filler


def remount(path: Path, mode: str) -> None:
    """Make the file system at ``path`` read-only (``ro``) or writable again (``rw``)."""
    subprocess.run(["mount", "-o", f"remount,{mode}", str(path)], check=True)
