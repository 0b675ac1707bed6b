"""``reelgate serve`` as a first user meets it: a busy port, several API processes."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.procs import wait_until

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def env(**settings: str) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("REELGATE_")}
    return {**clean, "REELGATE_LOG_LEVEL": "warning", **settings}


def serve(data: Path, *args: str, **settings: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "reelgate", "serve", "--data-dir", str(data), *args],
        cwd=ROOT,
        env=env(**settings),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


@pytest.mark.parametrize("processes", ["1", "2"])
def test_a_busy_port_is_an_error_before_anything_is_announced(
    tmp_path: Path, busy_port: int, processes: str
) -> None:
    data = tmp_path / "data"
    process = serve(data, "--port", str(busy_port), "--api-processes", processes)
    output, _ = process.communicate(timeout=60)
    assert process.returncode == 1, output
    assert f"cannot listen on 127.0.0.1:{busy_port}" in output
    assert "Address already in use" in output and "--port" in output
    assert "serving at" not in output and "rg_" not in output and "API key" not in output
    assert not (data / "first-api-key").exists()


def wait_until_serving(process: subprocess.Popen[str], url: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()[0]
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise AssertionError("the server did not start")


def children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(child) for child in path.read_text().split()]


@pytest.mark.skipif(sys.platform != "linux", reason="counts processes in /proc")
def test_two_api_processes_share_the_port_and_wake_one_worker(tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    data = tmp_path / "data"
    # A 60 s poll interval: a task created in the process without the worker is only
    # dispatched quickly if that process wakes the worker of the other one.
    process = serve(
        data,
        "--port",
        str(port),
        "--api-processes",
        "2",
        "--workers",
        "1",
        REELGATE_RENDERER="instant",
        REELGATE_POLL_INTERVAL="60",
    )
    try:
        wait_until_serving(process, url)  # the first process serves; the second may still start
        wait_until(lambda: len(children(process.pid)) == 2, timeout=30, what="two API processes")
        key = (data / "first-api-key").read_text().strip()
        headers = {"Authorization": f"Bearer {key}"}
        # One task at a time, each over a new connection, so that about half of them
        # are created in the process without the worker, and each must finish before
        # the next is created.
        for _ in range(8):
            created = httpx.post(
                f"{url}/v1/videos",
                headers=headers,
                json={"prompt": "two processes", "model": "doubao-seedance-2-0-fast"},
                timeout=10,
            )
            assert created.status_code == 200, created.text
            task_id = created.json()["id"]
            deadline = time.monotonic() + 10
            while (video := httpx.get(f"{url}/v1/videos/{task_id}", headers=headers).json())[
                "status"
            ] != "SUCCESS":
                assert time.monotonic() < deadline, f"not dispatched without the poll: {video}"
                time.sleep(0.02)
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        output, _ = process.communicate(timeout=60)
    assert process.returncode == 0, output
    assert output.count("reelgate is serving at") == 1  # the first process announces
    assert output.count("API key (shown once") == 1
    assert "2 API processes" in output
