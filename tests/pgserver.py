"""A private, throwaway PostgreSQL server that a test may stop and start at will.

``private_postgres()`` runs ``initdb`` into a temporary folder and starts the
server on a free port of 127.0.0.1 (trust authentication, no Unix socket
outside that folder). Stopping it takes nothing away from other tests, unlike
stopping the machine's shared server, which concurrent test runs use.

As root, the server programs run as the ``postgres`` user (``initdb`` and
``postgres`` refuse to run as root); otherwise as the current user.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.procs import free_port


def find_bindir() -> Path | None:
    """The folder of ``initdb`` and ``pg_ctl``: the newest of /usr/lib/postgresql, else PATH."""

    def major(path: str) -> int:
        version = Path(path).parent.parent.name
        return int(version) if version.isdigit() else 0

    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=major)
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


@dataclass
class PrivatePostgres:
    """A PostgreSQL server of our own, in ``data_dir``, on ``127.0.0.1:port``."""

    bindir: Path
    data_dir: Path
    port: int
    run_as: str | None  # a user to run the server programs as (when we are root)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def _run(self, *argv: str, timeout: float = 60.0) -> None:
        command = [str(self.bindir / argv[0]), *argv[1:]]
        if self.run_as is not None:
            command = ["runuser", "-u", self.run_as, "--", *command]
        done = subprocess.run(
            command, timeout=timeout, stdin=subprocess.DEVNULL, capture_output=True, text=True
        )
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed:\n{done.stdout}{done.stderr}")

    def init(self) -> None:
        """Create the cluster (trust authentication for the ``postgres`` role)."""
        db = str(self.data_dir / "db")
        self._run("initdb", "-D", db, "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync")

    def start(self) -> None:
        """Start the server and wait until it accepts connections."""
        options = (
            f"-c port={self.port} -c listen_addresses=127.0.0.1 "
            f"-c unix_socket_directories={self.data_dir} -c max_connections=60"
        )
        log = str(self.data_dir / "server.log")
        self._run(
            "pg_ctl", "start", "-w", "-D", str(self.data_dir / "db"), "-o", options, "-l", log
        )
        self.wait_ready()

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (``fast``: roll back open transactions, close every connection)."""
        self._run("pg_ctl", "stop", "-w", "-m", mode, "-D", str(self.data_dir / "db"))

    def ready(self) -> bool:
        """Whether the server accepts connections now (``pg_isready``)."""
        command = [str(self.bindir / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(self.port)]
        return subprocess.run(command, check=False, timeout=10).returncode == 0

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while not self.ready():
            if time.monotonic() > deadline:
                raise RuntimeError(f"the private PostgreSQL did not answer in {timeout:.0f}s")
            time.sleep(0.1)


@contextmanager
def private_postgres() -> Iterator[PrivatePostgres]:
    """Create and start a private PostgreSQL server; stop it and delete it afterwards."""
    bindir = find_bindir()
    if bindir is None:
        raise RuntimeError("initdb was not found (install the PostgreSQL server)")
    run_as = None
    # /tmp, not pytest's tmp_path: the postgres user must be able to reach the folder.
    data_dir = Path(tempfile.mkdtemp(prefix="reelgate-pg-"))
    if os.geteuid() == 0:
        run_as = "postgres"
        user = pwd.getpwnam(run_as)
        os.chown(data_dir, user.pw_uid, user.pw_gid)
    server = PrivatePostgres(bindir, data_dir, free_port(), run_as)
    try:
        server.init()
        server.start()
        yield server
    finally:
        try:
            if server.ready():
                server.stop("immediate")
        finally:
            shutil.rmtree(data_dir, ignore_errors=True)
