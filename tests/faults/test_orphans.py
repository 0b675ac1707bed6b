"""``kill -9`` of the process that owns the render processes (the process only, as the
OOM killer does it, not its group): within seconds none of its render processes remains.

On SQLite the victim is ``reelgate serve`` with its embedded worker; on PostgreSQL it is
a ``reelgate worker`` beside an API-only server. Before the kill, a SIGTERM sent to the
render processes themselves is ignored (the parent decides when a render stops).
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from tests.faults.common import (
    client,
    create,
    descendants,
    gone,
    render_children,
    rendering,
    start_server,
    videos,
)
from tests.procs import Proc, start_worker, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(90)]
SETTINGS = {"REELGATE_PREVIEW_DELAY": "*=10", "REELGATE_LEASE_SECONDS": "30"}


def test_render_processes_die_with_their_parent(
    database: str, tmp_path: Path, procs: list[Proc]
) -> None:
    embedded = database.startswith("sqlite")
    api = start_server(tmp_path / "api", database, workers=2 if embedded else 0, **SETTINGS)
    procs.append(api)
    victim: Proc = api
    if not embedded:
        env = {"REELGATE_DATABASE_URL": database, "REELGATE_POLL_INTERVAL": "0.3", **SETTINGS}
        victim = start_worker(tmp_path / "worker", env, concurrency=2)
        procs.append(victim)
    with client(api) as http:
        ids = [create(http, n) for n in range(2)]

        def both_rendering() -> set[int] | None:
            busy = {pid for pid in render_children(victim.pid) if rendering(pid)}
            return busy if len(busy) == 2 else None

        renders = wait_until(both_rendering, timeout=30, what="two renders under way")
        before = {task_id: video["progress"] for task_id, video in videos(http, ids).items()}
        for pid in renders:
            os.kill(pid, signal.SIGTERM)  # ignored: only their parent stops them

        def progressed() -> bool:
            now = videos(http, ids)
            return all(now[task_id]["progress"] > before[task_id] for task_id in ids)

        wait_until(progressed, timeout=20, what="the renders to go on after SIGTERM")
        assert not any(gone(pid) for pid in renders), "a render process died of SIGTERM"

    tree = descendants(victim.pid)  # the render processes and multiprocessing's helper
    assert renders <= tree
    os.kill(victim.pid, signal.SIGKILL)  # the process only, not its group
    killed_at = time.monotonic()
    victim.popen.wait(timeout=10)

    def orphans_gone() -> bool:
        return all(gone(pid) for pid in tree)

    wait_until(orphans_gone, timeout=5, what=f"no orphan of {victim.name}", interval=0.02)
    took = time.monotonic() - killed_at
    print(f"kill -9 of {victim.name}: its {len(tree)} child processes gone {took:.2f}s later")
