"""#7: server memory (RSS) with 100,000 tasks stored, idle and under #1's load.

Two servers in turn, configured alike (SQLite, the default renderer and pool): one
over a store with 100,000 finished tasks, one over an empty store (the API key only).
For each: ``VmRSS`` of the server process (from ``/proc/<pid>/status``) once it is
ready and has settled (idle), then its peak while wrk sends #1's load, retrieves
with ids spread at random over the stored tasks. On the empty store the same load
asks for ids that are not there (each answers ``400 task_not_exist`` after the
same key check and store lookup). Target: growth (full minus empty) ≤ 50 MB, idle
and under load (MB = 10^6 bytes).

Run alone: ``python -m bench.memory [--quick] [--tasks N]``.
"""

from __future__ import annotations

import argparse
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from bench import options
from bench.load import Load, LoadGenerator, LoadResult
from bench.report import Row
from bench.seed import migrate_sqlite, seed_sqlite
from bench.servers import Server, create_key, running_server
from reelgate.domain.task import new_task_id

TASKS, QUICK_TASKS = 100_000, 2_000
SETTLE_SECONDS, QUICK_SETTLE_SECONDS = 2.0, 0.5  # after start, before the idle reading
TARGET = "growth ≤ 50 MB"
MB = 1e6


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """This benchmark's own options."""
    parser.add_argument("--tasks", type=int, default=None, help=f"tasks stored [{TASKS:,}]")


def measure(args: argparse.Namespace) -> list[Row]:
    """Idle and loaded RSS over the full store and over the empty one."""
    count = args.tasks or (QUICK_TASKS if args.quick else TASKS)
    seconds = options.seconds(args)
    with options.workdir() as work:
        generator = options.load_generator(args, work)
        started = time.perf_counter()
        ids = seed_sqlite(work / "full" / "reelgate.db", count)
        seeding = time.perf_counter() - started
        full = _sample(args, work / "full", ids, generator, seconds, "memory-full", stored=True)
        migrate_sqlite(work / "empty" / "reelgate.db")
        absent = [new_task_id() for _ in range(min(count, 10_000))]
        empty = _sample(
            args, work / "empty", absent, generator, seconds, "memory-empty", stored=False
        )
    rows = []
    for state in ("idle", "load"):
        size, base = full.rss(state), empty.rss(state)
        growth = (size - base) / MB
        when = "idle" if state == "idle" else "peak under #1's load"
        detail = (
            f"{when}: {size / MB:.1f} MB with {count:,} tasks stored, {base / MB:.1f} MB with "
            f"none (VmRSS of the server process). Seeding took {seeding:.1f} s. Load on the "
            f"full store {full.result}; on the empty one {empty.result}."
        )
        rows.append(
            Row(
                f"7 {state}",
                f"server RSS, {count:,} tasks, {when}",
                f"{size / MB:.1f} MB ({growth:+.1f} MB)",
                f"{base / MB:.1f} MB (empty store)",
                size / base,
                TARGET,
                growth <= 50,
                detail,
                {"rss": size, "empty_rss": base, "growth_mb": growth},
            )
        )
    return rows


@dataclass(frozen=True)
class _Sample:
    """One server's memory: idle and peak under load, in bytes; the load's summary."""

    idle: int
    load: int
    result: str

    def rss(self, state: str) -> int:
        return self.idle if state == "idle" else self.load


def _sample(
    args: argparse.Namespace,
    data: Path,
    ids: list[str],
    generator: LoadGenerator,
    seconds: int,
    name: str,
    *,
    stored: bool,
) -> _Sample:
    """Start a server over ``data``, read its idle RSS, then its peak under load.

    ``stored``: the ids are stored tasks, so that every request must answer 200.
    """
    key = create_key(data)
    load = Load("GET", [f"/v1/videos/{i}" for i in ids], {"Authorization": f"Bearer {key}"})
    with running_server(data) as server:
        time.sleep(QUICK_SETTLE_SECONDS if args.quick else SETTLE_SECONDS)
        idle = server.rss_bytes()
        with _PeakRss(server) as peak, options.profiled(args, server.pid, name):
            result = generator.run(server.url, load, seconds)
    if stored:
        result.check("retrieve")
    return _Sample(idle, peak.value, _describe(result))


def _describe(result: LoadResult) -> str:
    text = result.summary()
    return text.replace(f", {result.errors} errors", f", {result.errors} answered 4xx")


class _PeakRss:
    """Samples a server's RSS every 50 ms in a thread; ``value`` is the peak seen."""

    def __init__(self, server: Server) -> None:
        self._server = server
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.value = 0

    def __enter__(self) -> _PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while True:
            self.value = max(self.value, self._server.rss_bytes())
            if self._stop.wait(0.05):
                return


def main() -> None:
    """Run #7 and report it."""
    options.main(__doc__, measure, add_arguments)


if __name__ == "__main__":
    main()
