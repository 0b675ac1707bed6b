"""#11: listing with 1,000,000 tasks in the store, a first page and a deep page.

The store (SQLite) holds 1,000,000 finished tasks of 1,000 owners, created one after
another and interleaved: the measured owner (``bench``) has 20,000 of them, 1,000
pages of 20. Three loads in turn on one ``reelgate serve``, each for the same time:

- ``retrieve``: ``GET /v1/videos/{id}``, ids at random over the owner's tasks: the
  baseline, the request clients send most;
- ``first``: ``GET /v1/videos?limit=20``, the owner's newest page;
- ``deep``: ``GET /v1/videos?limit=20&after=<id>``, cursors at random over the owner's
  oldest half (pages 500 to 1,000 of the newest-first order).

Each page is 20 video objects as the retrieve answers them (a signed link each). Rows:
``11 first`` and ``11 deep``, each over the retrieve (target ≥ 0.2x its req/s, a page
carries 20 tasks); the deep page also against the first (≥ 0.8x: keyset pagination,
no offset; a deep page costs what the first does). The notes give the SQLite plan.

Run alone: ``python -m bench.listing [--quick] [--tasks N]``.
"""

from __future__ import annotations

import argparse
import random
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

from bench import options
from bench.load import Load, alternate, fastest
from bench.report import Row
from bench.seed import finished_task, migrate_sqlite
from bench.servers import OWNER, create_key, running_server
from reelgate.domain.listing import ListQuery
from reelgate.store import sql

TASKS, QUICK_TASKS = 1_000_000, 20_000
OWNERS = 1_000
LIMIT = 20
PATH_FIRST = "`GET /v1/videos` first page of 20, 1,000,000 tasks"
PATH_DEEP = "`GET /v1/videos?after=…` a deep page of 20 (pages 500-1,000)"
TARGET_FIRST = "≥ 0.2x retrieve req/s"
TARGET_DEEP = "≥ 0.2x retrieve req/s, ≥ 0.8x first page"
CHUNK = 50_000


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """This benchmark's own options."""
    parser.add_argument("--tasks", type=int, default=None, help=f"tasks stored [{TASKS:,}]")


def measure(args: argparse.Namespace) -> list[Row]:
    """Seed, start one server, run the three loads in turn, report two rows."""
    count = args.tasks or (QUICK_TASKS if args.quick else TASKS)
    seconds, rounds = options.seconds(args), options.rounds(args)
    with options.workdir() as work:
        data = work / "data"
        started = time.perf_counter()
        mine = seed(data / "reelgate.db", count)  # the owner's ids, oldest first
        seeded = time.perf_counter() - started
        plan = deep_plan(data / "reelgate.db", mine[len(mine) // 4])
        key = create_key(data)
        auth = {"Authorization": f"Bearer {key}"}
        generator = options.load_generator(args, work)
        picker = random.Random(11)
        older = mine[LIMIT : len(mine) // 2]  # each cursor has a full page after it
        deep_ids = picker.sample(older, min(1000, len(older)))
        loads = {
            "retrieve": Load(
                "GET", [f"/v1/videos/{i}" for i in picker.sample(mine, min(1000, len(mine)))], auth
            ),
            "first": Load("GET", [f"/v1/videos?limit={LIMIT}"], auth),
            "deep": Load("GET", [f"/v1/videos?limit={LIMIT}&after={i}" for i in deep_ids], auth),
        }
        with running_server(data) as server:
            sizes = _check(server.url, auth, deep_ids[0])
            options.warm_up(args, generator, server.url, loads)
            with options.profiled(args, server.pid, "listing"):
                runs = alternate(generator, server.url, loads, seconds, rounds)
    base, first, deep = (fastest(runs[name]) for name in ("retrieve", "first", "deep"))
    common = (
        f"{count:,} SUCCESS tasks in SQLite (seeded in {seeded:.0f} s), about {OWNERS:,} "
        "owners, "
        f"{len(mine):,} of the measured owner's ({len(mine) // LIMIT:,} pages of {LIMIT}); "
        f"{generator.tool} with {generator.connections} connections, {rounds} x {seconds} s "
        f"alternating, best of each. Retrieve {base.summary()}. Bodies: {sizes}."
    )
    first_ratio, deep_ratio = first.rps / base.rps, deep.rps / base.rps
    return [
        Row(
            "11 first",
            PATH_FIRST,
            f"{first.rps:,.0f} req/s, p99 {first.p99_ms:.1f} ms",
            f"retrieve {base.rps:,.0f} req/s, p99 {base.p99_ms:.1f} ms",
            first_ratio,
            TARGET_FIRST,
            first_ratio >= 0.2,
            f"First page {first.summary()}. {common}",
            {"rps": first.rps, "p99_ms": first.p99_ms, "baseline_rps": base.rps},
        ),
        Row(
            "11 deep",
            PATH_DEEP,
            f"{deep.rps:,.0f} req/s, p99 {deep.p99_ms:.1f} ms",
            f"retrieve {base.rps:,.0f} req/s, p99 {base.p99_ms:.1f} ms",
            deep_ratio,
            TARGET_DEEP,
            deep_ratio >= 0.2 and deep.rps >= 0.8 * first.rps,
            f"Deep page {deep.summary()}, {deep.rps / first.rps:.2f}x the first page's "
            f"req/s. SQLite plan of a deep page: `{plan}`. {common}",
            {
                "rps": deep.rps,
                "p99_ms": deep.p99_ms,
                "baseline_rps": base.rps,
                "first_rps": first.rps,
            },
        ),
    ]


def seed(path: Path, count: int) -> list[str]:
    """Migrate ``path`` and store ``count`` finished tasks of ``OWNERS`` owners, one
    created every 10 ms, the measured owner's every 50th (2% of them).

    Tasks only (no events: a list reads none), in chunks of one transaction each.
    Returns the measured owner's ids, oldest first.
    """
    migrate_sqlite(path)
    mine: list[str] = []
    start = time.time() - count * 0.01
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA synchronous = OFF")  # seeding only: the server reopens it
        for chunk in _chunks(count, start, mine):
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(sql.INSERT_TASK, chunk)
            conn.execute("COMMIT")
        conn.execute("ANALYZE")
    finally:
        conn.close()
    return mine


def _chunks(count: int, start: float, mine: list[str]) -> Iterator[list[dict[str, object]]]:
    every = 50  # 2% of the tasks are the measured owner's
    for first in range(0, count, CHUNK):
        chunk = []
        for n in range(first, min(first + CHUNK, count)):
            owner = OWNER if n % every == 0 else f"owner-{n % OWNERS}"
            task = finished_task(start + n * 0.01, owner)
            if owner == OWNER:
                mine.append(task.id)
            chunk.append(sql.task_params(task))
        yield chunk


def deep_plan(path: Path, after_id: str) -> str:
    """SQLite's plan of a deep page, as the server runs it (the cursor resolved)."""
    conn = sqlite3.connect(path)
    try:
        created_at, task_id = conn.execute(
            "SELECT created_at, id FROM tasks WHERE id = ?", (after_id,)
        ).fetchone()
        statement, params = sql.list_statement(OWNER, ListQuery(limit=LIMIT), (created_at, task_id))
        rows = conn.execute("EXPLAIN QUERY PLAN " + statement, params).fetchall()
        return "; ".join(row[3] for row in rows)
    finally:
        conn.close()


def _check(base_url: str, auth: dict[str, str], after_id: str) -> str:
    """Both list loads answer full pages; their body sizes, for the notes."""
    first = httpx.get(f"{base_url}/v1/videos?limit={LIMIT}", headers=auth, timeout=30)
    deep = httpx.get(f"{base_url}/v1/videos?limit={LIMIT}&after={after_id}", headers=auth)
    for response in (first, deep):
        if response.status_code != 200 or len(response.json()["data"]) != LIMIT:
            raise RuntimeError(f"{response.url} answered {response.status_code}: {response.text}")
    return f"first page {len(first.content):,} B, deep page {len(deep.content):,} B"


def main() -> None:
    """Run #11 and report it."""
    options.main(__doc__, measure, add_arguments)


if __name__ == "__main__":
    main()
