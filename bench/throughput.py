"""#5: end-to-end tasks per second with the instant renderer, SQLite and PostgreSQL.

End to end: ``--tasks`` multipart creates are sent over HTTP, ``--clients`` at a time,
by ``bench.pyload`` (a raw asyncio client in its own process, far cheaper than httpx,
so that the client is not the bottleneck) to a server whose embedded worker
(``--workers`` concurrent tasks) claims each task, renders it with the instant
renderer, stores the clip and finishes it. The rate is the number of tasks over the
time from the first task's creation to the last one's completion, both read from
the database (the server's own clock).

The baseline, on a fresh database of the same kind: the store adapter's own rate in
this process, with ``--clients`` concurrent chains each looping ``create_task`` →
``claim_tasks`` → ``finish_task`` directly (no HTTP, no worker, no files): the insert
and the updates a task costs at the least. Baseline and end-to-end runs alternate
(``--rounds``), and the best of each counts. Target: end to end at least 0.3 of
the store's rate.

Run alone: ``python -m bench.throughput [--quick] [--tasks N] [--backends sqlite]``.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg

from bench import forms, options
from bench.load import Load, LoadGenerator
from bench.report import Row, failed_row
from bench.seed import query, submitted_task
from bench.servers import create_key, running_server, temporary_database
from reelgate.domain.status import Status
from reelgate.services.tasks import output_key
from reelgate.store import open_store

TASKS, QUICK_TASKS = 1000, 30
BACKENDS = ("sqlite", "postgresql")
TARGET = "≥ 0.3x store rate"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """This benchmark's own options."""
    parser.add_argument("--tasks", type=int, default=None, help=f"tasks per run [{TASKS}]")
    parser.add_argument("--clients", type=int, default=8, help="concurrent creates")
    parser.add_argument(
        "--workers",
        type=int,
        default=16,
        help="the worker's concurrency (instant renders are I/O-bound: in-flight tasks, not cores)",
    )
    parser.add_argument("--backends", default=",".join(BACKENDS), help="comma-separated")


def measure(args: argparse.Namespace) -> list[Row]:
    """The store's rate and the end-to-end rate, for each backend."""
    count = args.tasks or (QUICK_TASKS if args.quick else TASKS)
    rows = []
    for backend in args.backends.split(","):
        path = f"end to end, instant renderer, {backend}"
        try:
            rows.append(_measure(args, backend, count, path))
        except (RuntimeError, OSError, psycopg.Error) as exc:
            rows.append(failed_row(f"5 {backend}", path, TARGET, f"{type(exc).__name__}: {exc}"))
    return rows


def _measure(args: argparse.Namespace, backend: str, count: int, path: str) -> Row:
    """Alternate the store's rate and the end-to-end rate; the best of each counts."""
    rounds = options.rounds(args)
    store_rates, rates = [], []
    for _ in range(rounds):
        with options.workdir() as work:
            with _database(backend, work / "store") as (url, _):
                store_rates.append(asyncio.run(_store_rate(url, count, args.clients)))
            rates.append(_end_to_end(args, backend, count, work / "data"))
    rate, store_rate = max(rates), max(store_rates)
    ratio = rate / store_rate
    detail = (
        f"{backend}: {count:,} tasks, {args.clients} clients creating over HTTP, worker "
        f"concurrency {args.workers}: {_rates(rates)} tasks/s (from the first create to the "
        f"last finish); the store adapter alone, {args.clients} chains of create → claim → "
        f"finish: {_rates(store_rates)} tasks/s; {rounds} alternating rounds, best of each."
    )
    return Row(
        f"5 {backend}",
        path,
        f"{rate:,.0f} tasks/s",
        f"{store_rate:,.0f} tasks/s (store)",
        ratio,
        TARGET,
        ratio >= 0.3,
        detail,
        {"rate": rate, "store_rate": store_rate},
    )


def _rates(rates: list[float]) -> str:
    return ", ".join(f"{rate:,.0f}" for rate in rates)


def _end_to_end(args: argparse.Namespace, backend: str, count: int, data: Path) -> float:
    """Tasks per second through a server, from the first create to the last finish."""
    with _database(backend, data) as (url, count_done):
        key = create_key(data, url)
        settings = {
            "REELGATE_RENDERER": "instant",
            "REELGATE_WORKERS": str(args.workers),
            "REELGATE_DATABASE_URL": url,
        }
        with running_server(data, settings) as server:
            client = LoadGenerator("python", data, connections=args.clients)
            body, content_type = forms.multipart(forms.fields())
            headers = {"Authorization": f"Bearer {key}", "Content-Type": content_type}
            with options.profiled(args, server.pid, f"throughput-{backend}"):
                client.send(server.url, Load("POST", ["/v1/videos"], headers, body), count)
                _wait(lambda: count_done()[0] >= count, timeout=max(60, count / 10))
            done, first, last = count_done()
    return done / (last - first)


Progress = Callable[[], tuple[int, float, float]]


@contextmanager
def _database(backend: str, folder: Path) -> Iterator[tuple[str, Progress]]:
    """A fresh database: its URL, and a reader of (tasks finished, first create, last end)."""
    statement = "SELECT count(*), min(created_at), max(completed_at) FROM tasks "
    statement += "WHERE status = 'SUCCESS'"
    if backend == "sqlite":
        folder.mkdir(parents=True, exist_ok=True)
        db = folder / "reelgate.db"
        yield f"sqlite:///{db}", lambda: _progress(query(db, statement)[0])
        return
    if backend != "postgresql":
        raise RuntimeError(f"unknown backend {backend!r}")
    with temporary_database() as url:

        def progress() -> tuple[int, float, float]:
            with psycopg.connect(url, autocommit=True) as conn:
                return _progress(conn.execute(statement).fetchone())

        yield url, progress


def _progress(row: Any) -> tuple[int, float, float]:
    count, first, last = row
    return int(count), float(first or 0), float(last or 0)


async def _store_rate(url: str, count: int, chains: int) -> float:
    """Tasks per second of ``chains`` concurrent create → claim → finish loops."""
    store = open_store(url)
    await store.migrate()
    todo = iter(range(count))

    async def chain(worker: str) -> None:
        for _ in todo:
            await store.create_task(submitted_task(time.time()))
            claimed = None
            while claimed is None:  # PostgreSQL's SKIP LOCKED may pass over a row held now
                batch = await store.claim_tasks(
                    worker=worker, now=time.time(), lease_seconds=30, max_attempts=3
                )
                claimed = batch[0] if batch else None
            await store.finish_task(
                claimed.id,
                worker=worker,
                now=time.time(),
                status=Status.SUCCESS,
                output_key=output_key(claimed.id),
            )

    try:
        start = time.perf_counter()
        await asyncio.gather(*(chain(f"bench-{n}") for n in range(chains)))
        return count / (time.perf_counter() - start)
    finally:
        await store.close()


def _wait(done: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise RuntimeError(f"the tasks did not all finish in {timeout:.0f} s")
        time.sleep(0.05)


def main() -> None:
    """Run #5 and report it."""
    options.main(__doc__, measure, add_arguments)


if __name__ == "__main__":
    main()
