"""Scripted renderers for tests of the worker and the API (no real encoding)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from reelgate.domain.errors import RenderError, RenderRejected
from reelgate.ports import ProgressFn, RenderJob

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
