"""kill -9 the whole server mid-render, start it again: every task still succeeds once."""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import av
import httpx
import pytest

pytestmark = pytest.mark.slow
MODEL = "doubao-seedance-1-0-pro"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start(data_dir: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "REELGATE_DATA_DIR": str(data_dir),
        "REELGATE_PORT": str(port),
        "REELGATE_WORKERS": "2",
        "REELGATE_LEASE_SECONDS": "2",
        "REELGATE_POLL_INTERVAL": "0.5",
        "REELGATE_PREVIEW_DELAY": "*=3",
    }
    with log.open("ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "reelgate", "serve"],
            env=env,
            stdout=out,
            stderr=out,
            start_new_session=True,  # so that the kill takes the render processes too
        )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz").status_code == 200:
                return process
        except httpx.TransportError:
            pass
        assert process.poll() is None, log.read_text()
        time.sleep(0.1)
    raise AssertionError("the server did not start: " + log.read_text())


def test_kill_9_mid_render_loses_nothing(tmp_path: Path) -> None:
    port, log = free_port(), tmp_path / "server.log"
    base = f"http://127.0.0.1:{port}"
    server = start(tmp_path, port, log)
    try:
        key = (tmp_path / "first-api-key").read_text().strip()
        printed = log.read_text()
        assert f"reelgate is serving at {base}" in printed
        assert f"API key (shown once, also kept in {tmp_path / 'first-api-key'}): {key}" in printed
        assert "PREVIEW renderer (CPU, offline) serves" in printed
        client = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=10)
        ids = []
        for i in range(4):
            response = client.post(
                "/v1/videos",
                data={
                    "prompt": f"crash test {i}",
                    "model": MODEL,
                    "seconds": "2",
                    "resolution": "480p",
                },
            )
            assert response.status_code == 200, response.text
            ids.append(response.json()["id"])
        seen = {task_id: 0 for task_id in ids}
        while not any(seen.values()):  # wait until renders are under way
            for task_id in ids:
                seen[task_id] = client.get(f"/v1/videos/{task_id}").json()["progress"]
            time.sleep(0.05)
        os.killpg(server.pid, signal.SIGKILL)
        server.wait()

        server = start(tmp_path, port, log)
        deadline = time.monotonic() + 120
        pending = set(ids)
        while pending and time.monotonic() < deadline:
            for task_id in list(pending):
                video = client.get(f"/v1/videos/{task_id}").json()
                assert video["progress"] >= seen[task_id], "progress went down"
                seen[task_id] = video["progress"]
                assert video["status"] in ("SUBMITTED", "IN_PROGRESS", "SUCCESS"), video
                if video["status"] == "SUCCESS":
                    pending.discard(task_id)
            time.sleep(0.1)
        assert not pending, log.read_text()
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)

    with sqlite3.connect(tmp_path / "reelgate.db") as db:
        attempts = dict(db.execute("SELECT id, attempts FROM tasks").fetchall())
        recorded = dict(db.execute("SELECT id, output_key FROM tasks").fetchall())
    assert max(attempts.values()) >= 2, "no render was interrupted and resumed"
    blobs = tmp_path / "blobs"
    outputs = sorted(str(p.relative_to(blobs)) for p in (blobs / "videos").glob("*.mp4"))
    assert outputs == sorted(recorded.values()), "one output per task, the one it records"
    for key in outputs:
        with av.open(str(blobs / key)) as container:
            stream = container.streams.video[0]
            assert (stream.width, stream.height) == (854, 480)
            assert sum(1 for _ in container.decode(stream)) == 48
