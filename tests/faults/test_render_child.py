"""``kill -9`` of one preview render process, as the OOM killer does it.

Only the task whose process died is affected: it goes back to the queue with backoff
(one attempt charged) and succeeds on its retry; the render in the other process runs
on undisturbed in the same process (it is not restarted, nor charged an attempt).
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import av
import pytest

from reelgate.domain.errors import RenderError
from reelgate.ports import ProgressFn, RenderJob
from reelgate.renderers import RENDER_CRASHED
from reelgate.renderers.preview import PreviewRenderer
from tests.faults.common import (
    Db,
    client,
    create,
    gone,
    render_children,
    rendering,
    start_server,
    videos,
)
from tests.procs import Proc, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]


def test_a_killed_render_process_retries_its_own_task_only(
    database: str, tmp_path: Path, procs: list[Proc]
) -> None:
    api = start_server(
        tmp_path / "server",
        database,
        workers=2,
        REELGATE_PREVIEW_DELAY="*=1",
        REELGATE_LEASE_SECONDS="30",  # a lease expiry cannot be what retries the task
    )
    procs.append(api)
    db = Db(database)
    with client(api) as http:
        ids = [create(http, n) for n in range(3)]

        def two_renders() -> dict[int, str] | None:
            found = {pid: rendering(pid) for pid in render_children(api.pid)}
            busy = {pid: task_id for pid, task_id in found.items() if task_id is not None}
            return busy if len(busy) == 2 else None

        busy = wait_until(two_renders, timeout=30, what="two renders under way")
        (victim_pid, victim), (survivor_pid, survivor) = sorted(busy.items())
        os.kill(victim_pid, signal.SIGKILL)
        killed_at = time.monotonic()

        def all_done() -> bool:
            seen = videos(http, ids)
            statuses = {video["status"] for video in seen.values()}
            assert statuses <= {"SUBMITTED", "IN_PROGRESS", "SUCCESS"}, (seen, api.output())
            return statuses == {"SUCCESS"}

        wait_until(all_done, timeout=45, what=f"every task to succeed\n{api.output()[-3000:]}")
        took = time.monotonic() - killed_at
        seen = videos(http, ids)

    attempts = db.column("attempts")
    assert attempts[victim] == 2, (attempts, api.output())
    assert all(attempts[task_id] == 1 for task_id in ids if task_id != victim), attempts
    assert not gone(survivor_pid), "the innocent render process was restarted"
    assert survivor_pid in render_children(api.pid)
    assert "its render process died; retry in" in " ".join(map(str, db.details(victim)))
    log = api.output()
    assert f"task {victim}: its render process died" in log
    assert "killed by signal 9" in log
    for task_id in ids:
        assert f"task {task_id} SUCCESS" in log
        assert seen[task_id]["progress"] == 100
    assert f"task {survivor}: its render process died" not in log
    assert " ERROR (" not in log
    print(f"render process killed: every task done {took:.1f}s later")


def job(model: str) -> RenderJob:
    return RenderJob("task_fault", model, "a fox", 1, 320, 180, 24)


async def test_the_renderer_charges_only_the_dead_childs_render(tmp_path: Path) -> None:
    others = render_children(os.getpid())  # e.g. the session's live server keeps some
    renderer = PreviewRenderer(processes=2, delays={"slow": 2.0}, nice=0)
    started = [asyncio.Event(), asyncio.Event()]

    def progress(n: int) -> ProgressFn:
        async def report(value: int) -> None:
            started[n].set()

        return report

    try:
        renders = [
            asyncio.create_task(renderer.render(job("slow"), tmp_path / f"{n}.mp4", progress(n)))
            for n in range(2)
        ]
        await asyncio.wait_for(asyncio.gather(*(event.wait() for event in started)), 30)
        deadline = time.monotonic() + 30
        while True:  # each child opens its file just after its first progress value
            ours = render_children(os.getpid()) - others
            pids = {pid: rendering_file(pid) for pid in ours}
            if {"0.mp4", "1.mp4"} <= set(pids.values()):
                break
            assert time.monotonic() < deadline, f"the renders did not start: {pids}"
            await asyncio.sleep(0.02)
        victim = next(pid for pid, name in pids.items() if name == "0.mp4")
        os.kill(victim, signal.SIGKILL)
        with pytest.raises(RenderError) as raised:
            await asyncio.wait_for(renders[0], 30)
        assert raised.value.code == RENDER_CRASHED
        assert "signal 9" in " ".join(getattr(raised.value, "__notes__", []))
        await asyncio.wait_for(renders[1], 30)  # the other render finishes undisturbed
        with av.open(str(tmp_path / "1.mp4")) as container:
            assert sum(1 for _ in container.decode(video=0)) == 24
        assert not (tmp_path / "0.mp4").exists()
        await renderer.render(job("fast"), tmp_path / "2.mp4", progress(0))  # a new child
        assert (tmp_path / "2.mp4").stat().st_size > 0
    finally:
        await renderer.close()
    assert not render_children(os.getpid()) & set(pids)


def rendering_file(pid: int) -> str | None:
    """The name of the .mp4 file the process ``pid`` has open, if any."""
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.endswith(".mp4"):
            return Path(target).name
    return None
