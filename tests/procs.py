"""reelgate as real subprocesses, for multi-process tests and benchmarks.

``start_api`` runs ``python -m reelgate serve`` and waits until ``/readyz``
answers; ``start_worker`` runs ``python -m reelgate worker`` and waits until it
logs its id. Each process gets its own session (process group), so that
``Proc.kill`` takes down whatever it started too, as ``kill -9`` of a whole
service would, and writes its output to a log file that assertion messages
quote.

The environment of a child is this process's, minus every ``REELGATE_*``
variable (so that a developer's shell cannot change a test), plus what the
caller passes.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import httpx

ROOT = Path(__file__).resolve().parents[1]
WORKER_STARTED = re.compile(r"worker (\S+): (\d+) concurrent renders")
T = TypeVar("T")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(
    check: Callable[[], T | None], *, timeout: float, what: str, interval: float = 0.05
) -> T:
    """Call ``check`` until it returns something other than None or False; return that."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result is not None and result is not False:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def child_env(settings: Mapping[str, str]) -> dict[str, str]:
    """The environment of a reelgate child: ours without ``REELGATE_*``, plus ``settings``."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("REELGATE_")}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(settings)
    return env


@dataclass
class Proc:
    """A reelgate subprocess, leader of its own process group, logging to ``log``."""

    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def output(self) -> str:
        """Everything the process wrote so far (stdout and stderr)."""
        try:
            return self.log.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def send(self, sig: int) -> None:
        """Send ``sig`` to the whole process group (no error if it is gone)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, sig)

    def kill(self) -> None:
        """``kill -9`` the process group and reap the leader."""
        self.send(signal.SIGKILL)
        self.popen.wait(timeout=30)

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM the group, wait up to ``timeout`` seconds, then SIGKILL; the exit status."""
        if self.alive():
            self.send(signal.SIGTERM)
            try:
                return self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.send(signal.SIGKILL)
        status = self.popen.wait(timeout=30)
        self.send(signal.SIGKILL)  # anything it left behind in its group
        return status

    def wait_for_output(self, pattern: re.Pattern[str], *, timeout: float) -> re.Match[str]:
        """The first match of ``pattern`` in the log; fails if the process exits first."""

        def found() -> re.Match[str] | None:
            match = pattern.search(self.output())
            if match is None and not self.alive():
                raise AssertionError(f"{self.name} exited:\n{self.output()[-4000:]}")
            return match

        return wait_until(found, timeout=timeout, what=f"{self.name} to log {pattern.pattern!r}")


@dataclass
class Api(Proc):
    """An API process: where it listens and the first API key it made (if any)."""

    base_url: str = ""
    data_dir: Path = Path()

    def first_key(self) -> str:
        """The key ``serve`` made on a database without keys (``<data>/first-api-key``)."""
        return (self.data_dir / "first-api-key").read_text().strip()


@dataclass
class Worker(Proc):
    """A worker process and the id it claims tasks under (``tasks.lease_owner``)."""

    id: str = ""


def _spawn(
    name: str, argv: list[str], env: Mapping[str, str], log: Path
) -> subprocess.Popen[bytes]:
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "reelgate", *argv],
            cwd=ROOT,
            env=child_env(env),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
            start_new_session=True,  # its own process group: kill takes its children too
        )


def spawn_api(
    data_dir: Path,
    settings: Mapping[str, str],
    *,
    name: str = "api",
    port: int | None = None,
    workers: int = 0,
) -> Api:
    """Start ``reelgate serve`` (API only unless ``workers``) on ``port`` or a free one.

    Does not wait (see ``ready``). The log is appended to, so that a process
    started again on the same folder keeps one log.
    """
    port = port or free_port()
    data_dir.mkdir(parents=True, exist_ok=True)
    log = data_dir / f"{name}.log"
    argv = ["serve", "--workers", str(workers), "--port", str(port), "--data-dir", str(data_dir)]
    popen = _spawn(name, argv, settings, log)
    return Api(name, popen, log, f"http://127.0.0.1:{port}", data_dir)


def ready(api: Api, *, timeout: float = 60.0) -> Api:
    """Wait until ``api`` answers ``/readyz`` with 200."""

    def answers() -> bool:
        if not api.alive():
            raise AssertionError(f"{api.name} exited:\n{api.output()[-4000:]}")
        try:
            return httpx.get(f"{api.base_url}/readyz", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    wait_until(answers, timeout=timeout, what=f"{api.name} to be ready", interval=0.1)
    return api


def spawn_worker(
    data_dir: Path,
    settings: Mapping[str, str],
    *,
    name: str = "worker",
    concurrency: int = 1,
    grace: float | None = None,
    models: str | None = None,
) -> Worker:
    """Start ``reelgate worker``; does not wait (see ``started``)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    log = data_dir / f"{name}.log"
    argv = ["worker", "--concurrency", str(concurrency), "--data-dir", str(data_dir)]
    if grace is not None:
        argv += ["--grace", str(grace)]
    if models is not None:
        argv += ["--models", models]
    settings = {"REELGATE_LOG_LEVEL": "info", **settings}
    return Worker(name, _spawn(name, argv, settings, log), log)


def started(worker: Worker, *, timeout: float = 60.0) -> Worker:
    """Wait until ``worker`` has migrated and logged its id; fill ``worker.id``."""
    worker.id = worker.wait_for_output(WORKER_STARTED, timeout=timeout).group(1)
    return worker


def start_api(
    data_dir: Path, settings: Mapping[str, str], *, name: str = "api", timeout: float = 60.0
) -> Api:
    """Start an API process and wait until it is ready."""
    return ready(spawn_api(data_dir, settings, name=name), timeout=timeout)


def start_worker(
    data_dir: Path,
    settings: Mapping[str, str],
    *,
    name: str = "worker",
    concurrency: int = 1,
    grace: float | None = None,
    timeout: float = 60.0,
) -> Worker:
    """Start a worker process and wait until it runs."""
    worker = spawn_worker(data_dir, settings, name=name, concurrency=concurrency, grace=grace)
    return started(worker, timeout=timeout)
