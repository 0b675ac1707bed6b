"""Scripted renderers for tests of the worker and the API (no real encoding)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from reelgate.domain.errors import RenderError, RenderRejected
from reelgate.domain.status import Status
from reelgate.domain.task import Task, TaskSpec, new_task_id
from reelgate.ports import ProgressFn, RenderJob, TaskStore

TINY_MP4 = b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom"


class ScriptedRenderer:
    """Reports progress in steps, then writes a few bytes, fails, or waits to be released."""

    name = "scripted"

    def __init__(self, steps: int = 4, hold: bool = False, fail: str | None = None) -> None:
        self.steps = steps
        self.fail = fail
        self.release = asyncio.Event() if hold else None
        self.started: list[str] = []
        self.running = asyncio.Event()

    async def render(self, job: RenderJob, out_path: Path, progress: ProgressFn) -> None:
        self.started.append(job.task_id)
        self.running.set()
        for step in range(1, self.steps + 1):
            await progress(step * 90 // self.steps)
            await asyncio.sleep(0)
        if self.release is not None:
            await self.release.wait()
        if self.fail == "rejected":
            raise RenderRejected("scripted rejection")
        if self.fail == "error":
            raise RenderError("scripted failure")
        if self.fail == "crash":
            raise RuntimeError("scripted crash")
        out_path.write_bytes(TINY_MP4 + job.task_id.encode())

    async def close(self) -> None:
        return None


async def claim_one(store: TaskStore, **kwargs: Any) -> Task | None:
    """The oldest claimable task, claimed alone (``claim_tasks`` with ``limit=1``)."""
    tasks = await store.claim_tasks(limit=1, **kwargs)
    return tasks[0] if tasks else None


def make_task(created_at: float = 1000.0, model: str = "doubao-seedance-2-0") -> Task:
    return Task(
        id=new_task_id(),
        owner="alice",
        spec=TaskSpec(model, "a cat", 5, "16:9", "720p"),
        status=Status.SUBMITTED,
        progress=0,
        created_at=created_at,
        updated_at=created_at,
    )
