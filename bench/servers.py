"""reelgate servers as subprocesses, their keys and memory, throwaway PostgreSQL databases."""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx
import psycopg

PG_ADMIN_URL = os.environ.get(
    "REELGATE_BENCH_PG_ADMIN", "postgresql://postgres@127.0.0.1:5432/test"
)
OWNER = "bench"


@dataclass
class Server:
    """A running ``reelgate serve``: its process (a session leader), URL and folders."""

    process: subprocess.Popen[bytes]
    url: str
    data_dir: Path
    log: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def rss_bytes(self) -> int:
        """The server process's resident memory (``VmRSS``), in bytes."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise RuntimeError(f"no VmRSS for process {self.pid}")

    def log_tail(self, lines: int = 20) -> str:
        """The last lines of the server's output, for error messages."""
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM the server's process group, SIGKILL it if it lingers."""
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout)
        with contextlib.suppress(ProcessLookupError):  # render children, the forkserver
            os.killpg(self.pid, signal.SIGKILL)
        self.process.wait()


def free_port() -> int:
    """A TCP port on loopback that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def server_env(data_dir: Path, port: int, settings: Mapping[str, str]) -> dict[str, str]:
    """The environment of a bench server: no inherited ``REELGATE_*``, then ``settings``."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("REELGATE_")}
    env.update(
        REELGATE_DATA_DIR=str(data_dir),
        REELGATE_HOST="127.0.0.1",
        REELGATE_PORT=str(port),
        REELGATE_BENCH_ROUTES="true",
        REELGATE_LOG_LEVEL="warning",
    )
    env.update(settings)
    return env


@contextlib.contextmanager
def running_server(
    data_dir: Path, settings: Mapping[str, str] | None = None, *, timeout: float = 60.0
) -> Iterator[Server]:
    """Start ``python -m reelgate serve`` with ``REELGATE_*`` ``settings``; stop it on exit.

    Waits until ``/readyz`` answers 200. The server runs in its own session so that
    stopping it also ends its render processes.
    """
    port = free_port()
    data_dir.mkdir(parents=True, exist_ok=True)
    log = data_dir / "server.log"
    with log.open("ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "reelgate", "serve"],
            env=server_env(data_dir, port, settings or {}),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
            start_new_session=True,
        )
    server = Server(process, f"http://127.0.0.1:{port}", data_dir, log)
    try:
        _wait_ready(server, timeout)
        yield server
    finally:
        server.stop()


def _wait_ready(server: Server, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"the server exited at start:\n{server.log_tail()}")
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(server.url + "/readyz", timeout=2).status_code == 200:
                return
        time.sleep(0.05)
    raise RuntimeError(
        f"the server did not answer /readyz in {timeout:.0f} s:\n{server.log_tail()}"
    )


def create_key(data_dir: Path, database_url: str | None = None) -> str:
    """A new API key of owner ``bench``, made with ``reelgate keys create`` (the secret)."""
    command = [sys.executable, "-m", "reelgate", "keys", "create", "--owner", OWNER]
    command += ["--data-dir", str(data_dir)]
    if database_url is not None:
        command += ["--database-url", database_url]
    env = server_env(data_dir, 0, {})
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"reelgate keys create failed:\n{done.stderr}")
    return done.stdout.strip().splitlines()[-1]


@contextlib.contextmanager
def temporary_database(admin_url: str = PG_ADMIN_URL) -> Iterator[str]:
    """A new PostgreSQL database ``reelgate_bench_<random>``: its URL; dropped on exit."""
    name = "reelgate_bench_" + secrets.token_hex(6)
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{admin_url.rsplit('/', 1)[0]}/{name}"
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def postgres_version() -> str:
    """The version of the PostgreSQL server the benchmarks use."""
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        row = conn.execute("SHOW server_version").fetchone()
    return str(row[0]) if row else "unknown"
