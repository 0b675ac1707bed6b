"""#1 and #2: retrieving tasks, idle and while videos render, against the baseline route.

#1: ``GET /v1/videos/{id}`` with a valid key, ids spread at random over 10,000 stored
SUCCESS tasks, against ``GET /bench/videos/{id}`` on the same server: the same stack
answering the same JSON (same fields, same size, a signed link included) without auth
or store. Target: throughput at least 0.6 of the baseline's; p99 reported.

#2: the same retrieve load while the embedded worker renders 720p videos with the
preview renderer at full concurrency (the pool at its default size, a queue that
outlasts the measurement). Target: p99 at most 3 times #1's idle p99.

Both run on one server, so that #2 compares with the idle p99 of the very process
that then renders. Run alone: ``python -m bench.retrieve [--quick]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from pathlib import Path

import httpx

from bench import forms, options
from bench.load import Load, LoadGenerator, alternate, fastest, steadiest
from bench.report import Row, failed_row
from bench.seed import query, seed_sqlite
from bench.servers import Server, create_key, running_server
from reelgate.settings import Settings

TASKS, QUICK_TASKS = 10_000, 300
PATH_1 = "`GET /v1/videos/{id}`, 10,000 tasks"
PATH_2 = "the same while the worker renders 720p"
TARGET_1, TARGET_2 = "≥ 0.6x baseline req/s", "p99 ≤ 3x idle p99"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """This benchmark's own options."""
    parser.add_argument("--tasks", type=int, default=None, help=f"tasks stored [{TASKS:,}]")
    parser.add_argument("--no-renders", action="store_true", help="skip #2")


def measure(args: argparse.Namespace) -> list[Row]:
    """Seed, start one server, measure #1 and then #2 on it."""
    count = args.tasks or (QUICK_TASKS if args.quick else TASKS)
    seconds, rounds = options.seconds(args), options.rounds(args)
    with options.workdir() as work:
        data = work / "data"
        ids = seed_sqlite(data / "reelgate.db", count)
        key = create_key(data)
        generator = options.load_generator(args, work)
        retrieve = Load("GET", [f"/v1/videos/{i}" for i in ids], {"Authorization": f"Bearer {key}"})
        baseline = Load("GET", [f"/bench/videos/{i}" for i in ids])
        with running_server(data) as server:
            sizes = _body_sizes(server.url, ids[0], key)
            options.warm_up(args, generator, server.url, {"b": baseline, "r": retrieve})
            with options.profiled(args, server.pid, "retrieve-idle"):
                runs = alternate(
                    generator,
                    server.url,
                    {"baseline": baseline, "retrieve": retrieve},
                    seconds,
                    rounds,
                )
            best, base = fastest(runs["retrieve"]), fastest(runs["baseline"])
            idle = steadiest(runs["retrieve"])
            ratio = best.rps / base.rps
            detail = (
                f"{count:,} SUCCESS tasks in SQLite, ids at random; {generator.tool} with "
                f"{generator.connections} connections, {rounds} x {seconds} s alternating, "
                f"best of each. Retrieve {best.summary()}; baseline {base.summary()}. "
                f"Bodies: {sizes}."
            )
            rows = [
                Row(
                    "1",
                    PATH_1,
                    f"{best.rps:,.0f} req/s, p99 {best.p99_ms:.1f} ms",
                    f"{base.rps:,.0f} req/s, p99 {base.p99_ms:.1f} ms",
                    ratio,
                    TARGET_1,
                    ratio >= 0.6,
                    detail,
                    {"rps": best.rps, "baseline_rps": base.rps, "p99_ms": best.p99_ms},
                )
            ]
            if not args.no_renders:
                rows.append(_busy(args, server, key, generator, retrieve, idle.p99_ms, count))
    return rows


def _busy(
    args: argparse.Namespace,
    server: Server,
    key: str,
    generator: LoadGenerator,
    retrieve: Load,
    idle_p99: float,
    seeded: int,
) -> Row:
    """#2: queue renders, wait until they run, measure the same retrieve load."""
    seconds, rounds = options.seconds(args), options.rounds(args)
    # A 720p 5 s render takes well over a second of a core: this queue outlasts the runs.
    queued = (os.cpu_count() or 2) * (rounds * seconds + 10)
    asyncio.run(_queue(server.url, key, queued))
    db = server.data_dir / "reelgate.db"
    try:
        _wait_rendering(db, timeout=60)
    except TimeoutError as exc:
        return failed_row("2", PATH_2, TARGET_2, str(exc))
    with options.profiled(args, server.pid, "retrieve-busy"):
        results = alternate(generator, server.url, {"busy": retrieve}, seconds, rounds)["busy"]
    statuses = _statuses(db)
    busy = steadiest(results)
    ratio = busy.p99_ms / idle_p99
    workers = default_workers()
    still = statuses.get("SUBMITTED", 0) + statuses.get("IN_PROGRESS", 0)
    detail = (
        f"{queued} 720p 5 s renders queued, {workers} at a time (the default pool); "
        f"{statuses.get('SUCCESS', 0) - seeded} finished during the runs, "
        f"{still} still queued or rendering at the end"
        + ("" if still else " (**the queue ran dry: renders did not last the runs**)")
        + f". Busy {busy.summary()} (lowest p99 of {rounds}); idle p99 {idle_p99:.2f} ms."
    )
    return Row(
        "2",
        PATH_2,
        f"p99 {busy.p99_ms:.1f} ms ({busy.rps:,.0f} req/s)",
        f"idle p99 {idle_p99:.1f} ms",
        ratio,
        TARGET_2,
        ratio <= 3 and still > 0,
        detail,
        {"p99_ms": busy.p99_ms, "idle_p99_ms": idle_p99, "rps": busy.rps},
    )


async def _queue(base_url: str, key: str, count: int) -> None:
    async with forms.client(base_url, key, connections=4) as client:
        for _ in range(count):
            await forms.create(client, forms.fields("720p"))


def _wait_rendering(db: Path, timeout: float) -> None:
    """Return once a render has made progress."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if query(db, "SELECT 1 FROM tasks WHERE status = 'IN_PROGRESS' AND progress > 0"):
            return
        time.sleep(0.05)
    raise TimeoutError(f"no render made progress in {timeout:.0f} s")


def _statuses(db: Path) -> dict[str, int]:
    return dict(query(db, "SELECT status, count(*) FROM tasks GROUP BY status"))


def default_workers() -> int:
    """The render pool's size when ``REELGATE_WORKERS`` is not set (the product's default)."""
    return int(Settings.model_fields["workers"].get_default(call_default_factory=True))


def _body_sizes(base_url: str, task_id: str, key: str) -> str:
    """Both routes answer 200 with the same fields; their body sizes, for the notes."""
    auth = {"Authorization": f"Bearer {key}"}
    real = httpx.get(f"{base_url}/v1/videos/{task_id}", headers=auth, timeout=10)
    fake = httpx.get(f"{base_url}/bench/videos/{task_id}", timeout=10)
    for response in (real, fake):
        if response.status_code != 200:
            raise RuntimeError(f"{response.url} answered {response.status_code}: {response.text}")
    if json.loads(real.content).keys() != json.loads(fake.content).keys():
        raise RuntimeError(f"the routes' bodies differ in shape: {real.text} vs {fake.text}")
    return f"retrieve {len(real.content)} B, baseline {len(fake.content)} B"


def main() -> None:
    """Run #1 and #2 and report them."""
    options.main(__doc__, measure, add_arguments)


if __name__ == "__main__":
    main()
