"""#4: dispatch latency, create → IN_PROGRESS, with the instant renderer.

One client creates tasks one at a time, at random gaps of 20 to 100 ms, so that each
create finds the worker idle and waiting, on a store that already holds 100,000
finished tasks (a server with history, the store of #7). The server runs the instant
renderer with its default poll interval (2 s), so a worker that sleep-polled would
show a median near a second.

The figure is what a client sees: from just before the create is sent until the
task is claimed, i.e. its row is no longer SUBMITTED, watched by polling the SQLite
file every half millisecond (a read-only side channel that does not load the API).
The notes add the wake-up part alone from the server's own records, the ``at`` of
the SUBMITTED event (when the create is handled) to that of the first IN_PROGRESS
event (when the worker starts its claim). There is no baseline; the target is
absolute: median ≤ 50 ms (p99 reported).

Run alone: ``python -m bench.dispatch [--quick] [--tasks N] [--history N]``.
"""

from __future__ import annotations

import argparse
import random
import sqlite3
import statistics
import time
from pathlib import Path

import httpx

from bench import forms, options
from bench.report import Row
from bench.seed import query, seed_sqlite
from bench.servers import create_key, running_server

TASKS, QUICK_TASKS = 300, 20
HISTORY, QUICK_HISTORY = 100_000, 300
POLL_SECONDS = 0.0005
PATH = "dispatch: create → IN_PROGRESS, instant renderer"
TARGET = "median ≤ 50 ms"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """This benchmark's own options."""
    parser.add_argument("--tasks", type=int, default=None, help=f"tasks created [{TASKS}]")
    parser.add_argument(
        "--history",
        type=int,
        default=None,
        help=f"finished tasks stored beforehand [{HISTORY:,}, quick {QUICK_HISTORY}]",
    )


def measure(args: argparse.Namespace) -> list[Row]:
    """Create tasks one by one on an idle server and time each until it is claimed."""
    count = args.tasks or (QUICK_TASKS if args.quick else TASKS)
    history = args.history
    if history is None:
        history = QUICK_HISTORY if args.quick else HISTORY
    with options.workdir() as work:
        data = work / "data"
        db = data / "reelgate.db"
        seed_sqlite(db, history)
        key = create_key(data)
        with running_server(data, {"REELGATE_RENDERER": "instant"}) as server:
            with options.profiled(args, server.pid, "dispatch"):
                observed = _create_and_watch(server.url, key, db, count)
            _wait_finished(db, history + count, timeout=30)
        wakeups = _wakeups(db, set(observed))
    if len(wakeups) != count:
        raise RuntimeError(f"{count} tasks created but {len(wakeups)} dispatched")
    seen = sorted(observed.values())
    median, p99 = statistics.median(seen), _percentile(seen, 0.99)
    woke = sorted(wakeups.values())
    detail = (
        f"{count} tasks created one at a time, 20-100 ms apart, on a store holding "
        f"{history:,} finished tasks; poll interval 2 s. Create sent → claimed, as seen "
        f"by a client: median {median:.1f} ms, p90 {_percentile(seen, 0.9):.1f} ms, "
        f"p99 {p99:.1f} ms, max {seen[-1]:.1f} ms. The wake-up alone (SUBMITTED event → "
        f"the claim's start): median {statistics.median(woke):.1f} ms, "
        f"p99 {_percentile(woke, 0.99):.1f} ms."
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
            {"median_ms": median, "p99_ms": p99, "wakeup_median_ms": statistics.median(woke)},
        )
    ]


def _create_and_watch(base_url: str, key: str, db: Path, count: int) -> dict[str, float]:
    """Create ``count`` tasks one by one; milliseconds from each send to its claim."""
    observed = {}
    body, content_type = forms.multipart(forms.fields())
    headers = {"Authorization": f"Bearer {key}", "Content-Type": content_type}
    watcher = sqlite3.connect(f"file:{db}?mode=ro", uri=True, isolation_level=None)
    try:
        with httpx.Client(base_url=base_url, headers=headers, timeout=30) as client:
            for _ in range(count):
                sent = time.perf_counter()
                response = client.post("/v1/videos", content=body)
                if response.status_code != 200:
                    raise RuntimeError(f"create answered {response.status_code}: {response.text}")
                task_id = response.json()["id"]
                _until_claimed(watcher, task_id, timeout=30)
                observed[task_id] = (time.perf_counter() - sent) * 1e3
                time.sleep(random.uniform(0.02, 0.1))
    finally:
        watcher.close()
    return observed


def _until_claimed(conn: sqlite3.Connection, task_id: str, timeout: float) -> None:
    deadline = time.perf_counter() + timeout
    statement = "SELECT status FROM tasks WHERE id = ?"
    while conn.execute(statement, (task_id,)).fetchall() == [("SUBMITTED",)]:
        if time.perf_counter() > deadline:
            raise TimeoutError(f"task {task_id} was not claimed in {timeout:.0f} s")
        time.sleep(POLL_SECONDS)


def _wait_finished(db: Path, count: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while query(db, "SELECT count(*) FROM tasks WHERE status = 'SUCCESS'")[0][0] < count:
        if time.monotonic() > deadline:
            raise TimeoutError(f"the tasks did not all finish in {timeout:.0f} s")
        time.sleep(0.05)


def _wakeups(db: Path, ids: set[str]) -> dict[str, float]:
    """Milliseconds from the SUBMITTED event of each of ``ids`` to its first IN_PROGRESS."""
    rows = query(
        db,
        "SELECT task_id, status, min(at) FROM task_events "
        "WHERE status IN ('SUBMITTED', 'IN_PROGRESS') GROUP BY task_id, status",
    )
    submitted = {task: at for task, status, at in rows if status == "SUBMITTED"}
    started = {task: at for task, status, at in rows if status == "IN_PROGRESS"}
    return {task: (started[task] - submitted[task]) * 1e3 for task in ids if task in started}


def _percentile(ordered: list[float], share: float) -> float:
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def main() -> None:
    """Run #4 and report it."""
    options.main(__doc__, measure, add_arguments)


if __name__ == "__main__":
    main()
