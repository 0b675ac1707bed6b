"""#4: dispatch latency, create → IN_PROGRESS, with the instant renderer.

One client creates tasks one at a time, at random gaps of 20 to 100 ms, so that each
create finds the worker idle and waiting: the figure is how long a new task waits
for an idle worker. The server runs the instant renderer with its default poll
interval (2 s), so a worker that sleep-polled would show a median near a second.

Both times come from the server's own records, the ``task_events`` table: the ``at``
of a task's SUBMITTED event (taken when the create is handled) and of its first
IN_PROGRESS event (taken when the worker claims it). There is no baseline; the
target is absolute: median ≤ 50 ms (p99 reported).

Run alone: ``python -m bench.dispatch [--quick] [--tasks N]``.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import time
from pathlib import Path

from bench import forms, options
from bench.report import Row
from bench.seed import migrate_sqlite, query
from bench.servers import create_key, running_server

TASKS, QUICK_TASKS = 300, 20
PATH = "dispatch: create → IN_PROGRESS, instant renderer"
TARGET = "median ≤ 50 ms"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """This benchmark's own options."""
    parser.add_argument("--tasks", type=int, default=None, help=f"tasks created [{TASKS}]")


def measure(args: argparse.Namespace) -> list[Row]:
    """Create tasks one by one on an idle server and read their dispatch latencies."""
    count = args.tasks or (QUICK_TASKS if args.quick else TASKS)
    with options.workdir() as work:
        data = work / "data"
        db = data / "reelgate.db"
        migrate_sqlite(db)
        key = create_key(data)
        with running_server(data, {"REELGATE_RENDERER": "instant"}) as server:
            with options.profiled(args, server.pid, "dispatch"):
                ids = asyncio.run(_create_slowly(server.url, key, count))
            _wait_finished(db, len(ids), timeout=30)
        latencies = sorted(_latencies(db).values())
    if len(latencies) != count:
        raise RuntimeError(f"{count} tasks created but {len(latencies)} dispatched")
    median = statistics.median(latencies)
    p90, p99 = _percentile(latencies, 0.90), _percentile(latencies, 0.99)
    detail = (
        f"{count} tasks created one at a time, 20-100 ms apart, poll interval 2 s; "
        f"from the SUBMITTED and IN_PROGRESS events: median {median:.1f} ms, "
        f"p90 {p90:.1f} ms, p99 {p99:.1f} ms, max {latencies[-1]:.1f} ms."
    )
    return [
        Row(
            "4",
            PATH,
            f"median {median:.1f} ms, p99 {p99:.1f} ms",
            "— (absolute)",
            None,
            TARGET,
            median <= 50,
            detail,
            {"median_ms": median, "p90_ms": p90, "p99_ms": p99, "max_ms": latencies[-1]},
        )
    ]


async def _create_slowly(base_url: str, key: str, count: int) -> list[str]:
    ids = []
    async with forms.client(base_url, key, connections=1) as client:
        for _ in range(count):
            ids.append(await forms.create(client, forms.fields()))
            await asyncio.sleep(random.uniform(0.02, 0.1))
    return ids


def _wait_finished(db: Path, count: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while query(db, "SELECT count(*) FROM tasks WHERE status = 'SUCCESS'")[0][0] < count:
        if time.monotonic() > deadline:
            raise TimeoutError(f"the tasks did not all finish in {timeout:.0f} s")
        time.sleep(0.05)


def _latencies(db: Path) -> dict[str, float]:
    """Milliseconds from each task's SUBMITTED event to its first IN_PROGRESS event."""
    rows = query(
        db,
        "SELECT task_id, status, min(at) FROM task_events "
        "WHERE status IN ('SUBMITTED', 'IN_PROGRESS') GROUP BY task_id, status",
    )
    submitted = {task: at for task, status, at in rows if status == "SUBMITTED"}
    started = {task: at for task, status, at in rows if status == "IN_PROGRESS"}
    return {task: (started[task] - at) * 1e3 for task, at in submitted.items() if task in started}


def _percentile(ordered: list[float], share: float) -> float:
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def main() -> None:
    """Run #4 and report it."""
    options.main(__doc__, measure, add_arguments)


if __name__ == "__main__":
    main()
