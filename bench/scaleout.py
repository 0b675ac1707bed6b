"""#8: end-to-end tasks per second with 1, 2 and 4 worker processes on PostgreSQL.

For each number of worker processes N, on a fresh database: one API process
(``reelgate serve --workers 0``) and N ``reelgate worker`` processes with the
instant renderer (no delay) and local file storage shared by all; ``--tasks``
tasks are submitted as fast as ``--clients`` concurrent HTTP requests allow,
and the clock runs from the first submission until every task is SUCCESS (read
from the database directly, so that polling adds no load to the API).

The baseline is the one-process figure: each row is N processes' tasks/s with its
ratio to one process's, measured in the same run. Rounds (``--rounds``) go through
the worker counts in turn (1, 2, 4, then 4, 2, 1, …), and the best of each counts.
No target: the figure says how throughput grows with workers (with one API process
on a small machine, the API is often the limit; ``--drain`` also times the workers
emptying a queue on their own). ``--seconds``, ``--connections`` and ``--loadgen``
do not apply; ``--profile`` records the API process.

Needs the PostgreSQL server (``--admin-url``, default
``postgresql://postgres@127.0.0.1:5432/postgres``) to create and drop its
databases. Run alone: ``python -m bench.scaleout [--quick] [--tasks N] [--workers 1,2,4]``
(``--quick``: 1 and 2 processes, 40 tasks); it also prints a markdown table.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx
import psycopg

from bench import options
from bench.report import Row, failed_row
from bench.servers import free_port, temporary_database

TASKS, QUICK_TASKS = 1000, 40
TARGET = "reported (how throughput grows with workers)"
MODEL = "doubao-seedance-2-0-fast"
SIGNING_SECRET = "bench-scaleout-signing-secret-0123456789"
ADMIN_URL = os.environ.get(
    "REELGATE_BENCH_PG_ADMIN", "postgresql://postgres@127.0.0.1:5432/postgres"
)


@dataclass(frozen=True, slots=True)
class Result:
    """One measured run."""

    workers: int
    tasks: int
    submit_s: float
    total_s: float
    drain_s: float | None = None  # the same number of tasks, queued before the workers look

    @property
    def rate(self) -> float:
        return self.tasks / self.total_s

    @property
    def drain_rate(self) -> float | None:
        return None if self.drain_s is None else self.tasks / self.drain_s


class Processes:
    """reelgate subprocesses, each in its own process group, stopped together."""

    def __init__(self, env: dict[str, str], folder: Path) -> None:
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("REELGATE_")}
        self.env.update(env, PYTHONUNBUFFERED="1")
        self.folder = folder
        self.running: list[tuple[subprocess.Popen[bytes], Path]] = []

    def start(self, name: str, *argv: str) -> tuple[subprocess.Popen[bytes], Path]:
        data = self.folder / name
        data.mkdir(parents=True)
        log = data / "log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "reelgate", *argv, "--data-dir", str(data)],
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                start_new_session=True,
            )
        self.running.append((proc, log))
        return proc, log

    def signal(self, sig: int, names: Sequence[str]) -> None:
        """Send ``sig`` to the processes started under ``names``."""
        for proc, log in self.running:
            if log.parent.name in names:
                os.killpg(proc.pid, sig)

    def check(self) -> None:
        for proc, log in self.running:
            if proc.poll() is not None:
                raise RuntimeError(f"{proc.args!r} exited:\n{log.read_text()[-3000:]}")

    def stop(self) -> None:
        for proc, _ in self.running:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        for proc, _ in self.running:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


async def wait_ready(base_url: str, procs: Processes, logs: list[Path]) -> None:
    """Until the API answers /readyz and every worker has logged that it runs."""
    async with httpx.AsyncClient(base_url=base_url, timeout=2) as client:
        while True:
            procs.check()
            with contextlib.suppress(httpx.TransportError):
                if (await client.get("/readyz")).status_code == 200 and all(
                    "concurrent renders" in log.read_text() for log in logs
                ):
                    return
            await asyncio.sleep(0.1)


async def submit(base_url: str, key: str, tasks: int, clients: int) -> None:
    """Create ``tasks`` tasks with ``clients`` requests in flight at a time."""
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    headers = {"Authorization": f"Bearer {key}"}
    numbers = iter(range(tasks))

    async def client_loop(client: httpx.AsyncClient) -> None:
        for n in numbers:
            response = await client.post("/v1/videos", data={"prompt": f"b{n}", "model": MODEL})
            response.raise_for_status()

    async with httpx.AsyncClient(
        base_url=base_url, headers=headers, limits=limits, timeout=60
    ) as client:
        await asyncio.gather(*(client_loop(client) for _ in range(clients)))


async def wait_done(url: str, tasks: int, procs: Processes) -> None:
    """Until ``tasks`` tasks are SUCCESS; fails on any other final status."""
    query = "SELECT status, count(*) FROM tasks GROUP BY status"
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        while True:
            counts: dict[str, int] = dict(await (await conn.execute(query)).fetchall())
            if set(counts) - {"SUBMITTED", "IN_PROGRESS", "SUCCESS"}:
                raise RuntimeError(f"tasks ended otherwise than SUCCESS: {counts}")
            if counts.get("SUCCESS", 0) >= tasks:
                return
            procs.check()
            await asyncio.sleep(0.02)


async def run_once(
    admin_url: str,
    workers: int,
    tasks: int,
    concurrency: int,
    clients: int,
    drain: bool,
    args: argparse.Namespace | None = None,
) -> Result:
    """Measure ``tasks`` tasks through one API process and ``workers`` worker processes.

    With ``drain``, then also how fast the workers empty a queue of ``tasks`` more
    tasks, submitted while they are stopped (SIGSTOP) and released at once (SIGCONT):
    the worker side's throughput without the API's. With ``args.profile``, records
    the API process while it runs.
    """
    with (
        temporary_database(admin_url) as url,
        tempfile.TemporaryDirectory(prefix="rg-bench-") as tmp,
    ):
        folder = Path(tmp)
        env = {
            "REELGATE_DATABASE_URL": url,
            "REELGATE_STORAGE_URL": f"file://{folder / 'blobs'}",
            "REELGATE_SIGNING_SECRET": SIGNING_SECRET,
            "REELGATE_RENDERER": "instant",
            "REELGATE_LOG_LEVEL": "warning",
        }
        procs = Processes(env, folder)
        port = free_port()
        try:
            api, _ = procs.start("api", "serve", "--workers", "0", "--port", str(port))
            base_url = f"http://127.0.0.1:{port}"
            await wait_ready(base_url, procs, [])  # it migrates and makes the first key
            procs.env["REELGATE_LOG_LEVEL"] = "info"  # the workers announce themselves
            names = [f"worker{i}" for i in range(workers)]
            logs = [
                procs.start(name, "worker", "--concurrency", str(concurrency))[1] for name in names
            ]
            await wait_ready(base_url, procs, logs)
            key = (folder / "api" / "first-api-key").read_text().strip()
            profile: contextlib.AbstractContextManager[None] = contextlib.nullcontext()
            if args is not None:
                profile = options.profiled(args, api.pid, f"scaleout-{workers}w-api")
            with profile:
                started = time.perf_counter()
                done = asyncio.create_task(wait_done(url, tasks, procs))
                await submit(base_url, key, tasks, clients)
                submitted = time.perf_counter() - started
                await done
                total = time.perf_counter() - started
                if not drain:
                    return Result(workers, tasks, submitted, total)
                procs.signal(signal.SIGSTOP, names)
                try:
                    await submit(base_url, key, tasks, clients)
                    began = time.perf_counter()
                finally:
                    procs.signal(signal.SIGCONT, names)
                await wait_done(url, 2 * tasks, procs)
                return Result(workers, tasks, submitted, total, time.perf_counter() - began)
        finally:
            procs.stop()


def table(results: Sequence[Result]) -> str:
    """The results as a markdown table, with each rate's ratio to the one-worker rate."""
    first = next((r for r in results if r.workers == 1), results[0])
    drained = all(r.drain_rate is not None for r in results)
    head = "| worker processes | tasks | submitted in (s) | all SUCCESS in (s) | tasks/s | vs 1 |"
    rule = "|---:|---:|---:|---:|---:|---:|"
    if drained:
        head += " queue drained, tasks/s | vs 1 |"
        rule += "---:|---:|"
    lines = [head, rule]
    for r in results:
        line = (
            f"| {r.workers} | {r.tasks} | {r.submit_s:.2f} | {r.total_s:.2f} "
            f"| {r.rate:.0f} | {r.rate / first.rate:.2f} |"
        )
        if drained and r.drain_rate is not None and first.drain_rate is not None:
            line += f" {r.drain_rate:.0f} | {r.drain_rate / first.drain_rate:.2f} |"
        lines.append(line)
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """This benchmark's own options."""
    parser.add_argument("--workers", default="1,2,4", help="worker process counts [1,2,4]")
    parser.add_argument(
        "--tasks", type=int, default=None, help=f"tasks per run [{TASKS}, quick {QUICK_TASKS}]"
    )
    parser.add_argument("--concurrency", type=int, default=8, help="renders per worker [8]")
    parser.add_argument("--clients", type=int, default=32, help="requests in flight [32]")
    parser.add_argument("--admin-url", default=ADMIN_URL, help="PostgreSQL URL to create DBs")
    parser.add_argument(
        "--drain", action="store_true", help="also time emptying a queue of as many tasks"
    )


def worker_counts(args: argparse.Namespace) -> list[int]:
    """The numbers of worker processes to run (quick mode: at most 2)."""
    counts = [int(n) for n in args.workers.split(",") if n.strip()]
    if args.quick:
        counts = [n for n in counts if n <= 2] or [1]
    return counts


def measure(args: argparse.Namespace) -> list[Row]:
    """Each worker count's best rate over the rounds; one row per count."""
    counts = worker_counts(args)
    tasks = args.tasks or (QUICK_TASKS if args.quick else TASKS)
    rounds = options.rounds(args)
    runs: dict[int, list[Result]] = {n: [] for n in counts}
    errors: dict[int, str] = {}
    for round_ in range(rounds):
        for n in counts if round_ % 2 == 0 else reversed(counts):
            if n in errors:
                continue
            run = run_once(
                args.admin_url, n, tasks, args.concurrency, args.clients, args.drain, args
            )
            try:
                result = asyncio.run(run)
            except (RuntimeError, OSError, psycopg.Error, httpx.HTTPError) as exc:
                message = " ".join(str(exc).split())  # one line: a note of RESULTS.md
                errors[n] = f"{type(exc).__name__}: {message[-600:]}"
                continue
            runs[n].append(result)
    best = {n: max(runs[n], key=lambda r: r.rate) for n in counts if n not in errors}
    rows = [
        failed_row(_number(n), _path(n), TARGET, errors[n])
        if n in errors
        else _row(args, n, tasks, rounds, runs[n], best)
        for n in counts
    ]
    if best:
        print(
            f"End-to-end throughput on PostgreSQL, instant renderer, one API process; "
            f"{os.cpu_count()} CPUs, {args.concurrency} renders per worker, "
            f"{args.clients} requests in flight; best of {rounds}.\n"
        )
        print(table(list(best.values())) + "\n")
    return rows


def _number(workers: int) -> str:
    return f"8 {workers}w"


def _path(workers: int) -> str:
    processes = "process" if workers == 1 else "processes"
    return f"end to end with {workers} worker {processes}, PostgreSQL, instant renderer"


def _row(
    args: argparse.Namespace,
    workers: int,
    tasks: int,
    rounds: int,
    results: list[Result],
    best: dict[int, Result],
) -> Row:
    """The row of ``workers`` processes: their best rate against one process's."""
    rate = best[workers].rate
    one = best.get(1)
    ratio = None if one is None else rate / one.rate
    baseline = "—" if one is None else f"{one.rate:,.0f} tasks/s (1 process)"
    processes, each = ("process", "") if workers == 1 else ("processes", " each")
    runs = "one run" if rounds == 1 else f"{rounds} rounds, best of each"
    notes = (
        f"{workers} `reelgate worker` {processes} (concurrency {args.concurrency}{each}) and "
        f"one API process, {tasks:,} tasks, {args.clients} requests in flight: "
        f"{_rates(r.rate for r in results)} tasks/s (from the first submission to the last "
        f"SUCCESS; submitting took {best[workers].submit_s:.2f} s of "
        f"{best[workers].total_s:.2f} s); {runs}."
    )
    values = {"rate": rate, "submit_s": best[workers].submit_s, "total_s": best[workers].total_s}
    drain_rate = best[workers].drain_rate
    if drain_rate is not None:
        notes += f" A queue of {tasks:,} drained at {drain_rate:,.0f} tasks/s."
        values["drain_rate"] = drain_rate
    if one is not None:
        values["baseline_rate"] = one.rate
    return Row(
        _number(workers),
        _path(workers),
        f"{rate:,.0f} tasks/s",
        baseline,
        ratio,
        TARGET,
        None,
        notes,
        values,
    )


def _rates(rates: Iterable[float]) -> str:
    return ", ".join(f"{rate:,.0f}" for rate in rates)


def main(argv: Sequence[str] | None = None) -> int:
    """Run #8, print its rows (and a markdown table), write them where ``--json`` says."""
    parser = options.parser(__doc__, prog="python -m bench.scaleout")
    add_arguments(parser)
    args = parser.parse_args(argv)
    options.finish(args, measure(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
