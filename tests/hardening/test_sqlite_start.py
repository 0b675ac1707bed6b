"""Processes that start together on a fresh SQLite file all migrate it and go on.

Several API processes (``--api-processes``) or workers starting on a new data folder
open the same new file at once; SQLite reports some of those locks at once, without
its busy handler ("database is locked"), which once failed an API process at start.
"""

from __future__ import annotations

import asyncio
import multiprocessing
from multiprocessing.synchronize import Barrier
from pathlib import Path

from reelgate.store.sqlite import SqliteStore

PROCESSES = 6


def _migrate(path: Path, barrier: Barrier) -> None:
    store = SqliteStore(path)
    barrier.wait()  # all open the new file at the same instant

    async def go() -> None:
        try:
            await store.migrate()
        finally:
            await store.close()

    asyncio.run(go())


def test_processes_starting_together_on_a_new_file_all_migrate(tmp_path: Path) -> None:
    context = multiprocessing.get_context("spawn")
    for round_ in range(3):
        path = tmp_path / f"tasks-{round_}.db"
        barrier = context.Barrier(PROCESSES)
        processes = [
            context.Process(target=_migrate, args=(path, barrier)) for _ in range(PROCESSES)
        ]
        for process in processes:
            process.start()
        for process in processes:
            process.join(timeout=120)
        assert [process.exitcode for process in processes] == [0] * PROCESSES
