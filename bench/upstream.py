"""#9: upstream polling at scale: 10,000 tasks in flight at a fake Ark, against a naive poller.

reelgate on PostgreSQL (a throwaway database): one API process (``reelgate serve
--workers 0``) and ONE ``reelgate worker``, with a configuration file that routes
``doubao-seedance-2-0`` to a fake Ark (``reelgate.backends.remote.fakes.ark``) in its own
process, so that its CPU is measured apart. The provider allows 20,000 tasks in flight
and 1,000,000 requests a minute (timeout 30 s); ``[watch]`` pins the poll interval
(``min_interval = max_interval = --interval``, 30 s: reelgate's default longest
interval) with ``concurrency`` ``--concurrency`` (64, reelgate's default) and ``batch``
1,000; ``rehost_concurrency`` stays reelgate's default unless ``--rehost-concurrency`` is
given. ``--tasks`` tasks (10,000) are created through the HTTP API, 32 requests at a
time; the fake ends each after a random ``--min-seconds`` to ``--max-seconds`` (30 to
120; seeded: the k-th task it receives runs as long in every run). The run ends when
every task is SUCCESS (read from the database). Why not 10 s and 200: 10,000 tasks every
10 s are 1,000 GETs a second, more than one worker process polls on two cores (2 to 4 ms
of CPU each); and httpx's pool costs more per request the more connections it holds (on
this machine 32 or 64 in flight: 2 to 3.5 ms a GET; 200: 4.5 to 6), so 200 in flight
slows every poll and starves submissions. Both are options.

The fake is its module's app served by uvicorn as its ``main`` does, wrapped by the
benchmark to count each task's GETs and note when each video download starts, read back
through ``GET /_bench/tasks`` (with each task's create and end times as floats).

The baseline, in the same run: a naive poller in this process, one coroutine per task
(create it at the fake, then sleep the interval, GET, until ``succeeded``), on the HTTP
client reelgate's Ark adapter uses (httpx, 200 connections, 50 kept alive, the same
timeouts) with at most ``--concurrency`` requests in flight as reelgate's watcher has
(without a cap, thousands of requests queue in httpx's pool until its timeout), against a
fresh fake with the same seed, each task arriving when reelgate's API took its twin.

Figures (one clock, this machine's; "watched" = from the create at the fake to the poll
that saw the task succeeded: reelgate's REHOSTING event, or the naive GET's return):

- GETs per task per poll interval = the fake's task GETs / Σ (watched / interval): one
  poll per task per interval scores 1.00, less when polls come late (each next poll is
  counted from the end of the last, and a busy event loop adds its lag). The notes give
  the effective interval, GETs / Σ (run time at the fake / interval) with what a poller
  exactly on time makes of it (Σ ceil(run/interval) / Σ run/interval), and the most GETs
  any task got over its on-time count (a double poll shows there). Target ≤ 1.05.
- Upstream end → SUCCESS visible: ``completed_at`` (the commit that makes SUCCESS
  visible to the API) less the fake's end time, every task; split into the poll's delay
  (end → REHOSTING), the wait for a re-host slot (REHOSTING → the download's start at the
  fake) and the re-host itself (download start → SUCCESS). ``--sample`` tasks spread over
  the run are also polled through ``GET /v1/videos/{id}`` every 0.2 s from their end, as
  a client sees it. Target: median ≤ one interval + the median re-host itself. The naive
  poller's delay ends at its GET (it has nothing to re-host).
- Database writes per task: ``n_tup_ins + n_tup_upd + n_tup_del`` of
  ``pg_stat_user_tables`` for ``tasks``, ``task_events`` and ``durations`` once every
  process has exited (a backend flushes its counts then), over the tasks. Constant, not
  growing with time in flight: the same run's shortest third of tasks against its longest
  third (two to four times the polls), each task's writes counted from its events (a
  recorded move is one update and one event; the create one insert and one event; the
  learned duration one upsert); writes that events do not explain (unrecorded moves:
  faults, backoffs) are given apart. Target: the thirds within 2 %, and at most 2 % of
  the writes unexplained.
- The poller's CPU: the worker's user + system time (``/proc/<pid>/stat``) from the first
  create to the last SUCCESS, per 1,000 tasks and as a share of a core per 1,000 tasks in
  flight (CPU / Σ watched); it submits and re-hosts as well, which the naive poller does
  not. The notes split it: a least-squares fit of the worker's CPU in each second on the
  GETs, creates and downloads the fake served in it gives a cost per GET, to set against
  the naive poller's CPU per request. Also the seconds each poller's event loop waited,
  runnable, for a core (``/proc/<pid>/schedstat``): a busy machine shows there. No target.

The fake's own cost (its CPU per request) is in the notes. ``--rounds``, ``--seconds``,
``--connections`` and ``--loadgen`` do not apply (one run each: together they take about
9 minutes on two cores, reelgate's about 6 of them); ``--profile`` records the worker
with py-spy. ``--quick``: 200 tasks of 2 to 5 s polled every second (about 30 s). Needs
the PostgreSQL server (``REELGATE_BENCH_PG_ADMIN``). Run alone:
``python -m bench.upstream [--quick] [--tasks N] [--interval S] [--concurrency C]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psycopg

from bench import options
from bench.report import Row, failed_row
from bench.scaleout import Processes
from bench.servers import PG_ADMIN_URL, free_port, temporary_database

ROOT = Path(__file__).resolve().parent.parent
TASKS, QUICK_TASKS = 10_000, 200
RUN_SECONDS, QUICK_RUN_SECONDS = (30.0, 120.0), (2.0, 5.0)
INTERVAL, QUICK_INTERVAL = 30.0, 1.0
CONCURRENCY = 64  # reelgate's default [watch] concurrency
SAMPLE, QUICK_SAMPLE = 50, 20
CLIENTS = 32  # creates in flight
CLIENT_POLL = 0.2  # seconds between a sampled client's GETs
PROGRESS = 15.0  # seconds between progress lines
MODEL = "doubao-seedance-2-0"
KEY_ENV = "REELGATE_BENCH_ARK_KEY"  # the variable the config's api_key_env names
FAKE_KEY = "bench-upstream-ark-key"
SEED = 9  # the fakes' seed
SIGNING_SECRET = "bench-upstream-signing-secret-0123456789"
REHOSTING = "finished upstream"  # how the event of a move to REHOSTING begins
TASK_TABLES = ("tasks", "task_events", "durations")  # what tasks write to
API = "/api/v3/contents/generations/tasks"
GETS_TARGET = 1.05
WRITES_TOLERANCE = 0.02
TICK = os.sysconf("SC_CLK_TCK")
# reelgate's Ark adapter: httpx with these limits and timeouts (backends/remote/http.py)
LIMITS = httpx.Limits(max_connections=200, max_keepalive_connections=50)
TIMEOUT = httpx.Timeout(30.0, connect=5.0)


def say(line: str) -> None:
    """A progress line on stderr."""
    print(f"bench: {line}", file=sys.stderr, flush=True)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` (all its threads), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def runnable_seconds(pid: int) -> float:
    """How long the main thread of ``pid`` has waited for a core while runnable."""
    return int(Path(f"/proc/{pid}/schedstat").read_text().split()[1]) / 1e9


def prompt(n: int) -> str:
    return f"upstream bench task {n}"


def quantile(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile of ``values`` (nearest rank)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


# the fake -------------------------------------------------------------------------------


def serve_fake(argv: Sequence[str] | None = None) -> None:
    """Serve the fake Ark as ``python -m reelgate.backends.remote.fakes.ark`` does, counting
    each task's GETs and noting each video download's start, shown by ``GET /_bench/tasks``
    (``?id=`` to choose): ``[[id, prompt, created, ended, gets, download start], …]``."""
    import uvicorn
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.types import Receive, Scope, Send

    from reelgate.backends.remote.fakes.ark import FakeArkSettings, fake_ark_app

    parser = argparse.ArgumentParser(description="the fake Ark of bench.upstream")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--min-seconds", type=float, required=True)
    parser.add_argument("--max-seconds", type=float, required=True)
    args = parser.parse_args(argv)
    settings = FakeArkSettings(
        api_keys=(FAKE_KEY,), min_seconds=args.min_seconds, max_seconds=args.max_seconds, seed=SEED
    )
    inner = fake_ark_app(settings)
    fake = inner.state.fake
    gets: dict[str, int] = {}
    downloads: dict[str, float] = {}
    task_path, video_path = API + "/", "/_fake/videos/"

    async def tasks(request: Request) -> JSONResponse:
        chosen = request.query_params.getlist("id")
        found = (
            [fake.tasks[i] for i in chosen if i in fake.tasks] if chosen else fake.tasks.values()
        )
        rows = [
            [t.id, t.prompt, t.created, t.ended, gets.get(t.id, 0), downloads.get(t.id)]
            for t in found
        ]
        return JSONResponse({"tasks": rows})

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if path.startswith(task_path) and scope["method"] == "GET":
            task_id = path[len(task_path) :]
            gets[task_id] = gets.get(task_id, 0) + 1
        elif path.startswith(video_path):
            downloads.setdefault(path[len(video_path) :].removesuffix(".mp4"), time.time())
        elif path == "/_bench/tasks":
            response = await tasks(Request(scope))
            await response(scope, receive, send)
            return
        await inner(scope, receive, send)

    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")


@dataclass(frozen=True)
class UpstreamTask:
    """One task as the fake saw it."""

    id: str
    prompt: str
    created: float
    ended: float
    gets: int
    downloaded: float | None  # when its video's first download began


@dataclass
class Fake:
    """A fake Ark process: its URL, its process, and reads of its counters."""

    process: subprocess.Popen[bytes]
    url: str

    @property
    def pid(self) -> int:
        return self.process.pid

    def cpu(self) -> float:
        return cpu_seconds(self.pid)

    async def stats(self) -> dict[str, Any]:
        async with httpx.AsyncClient(timeout=30) as client:
            response = await client.get(self.url + "/_fake/stats")
        response.raise_for_status()
        data: dict[str, Any] = response.json()
        return data

    async def tasks(self, ids: Sequence[str] = ()) -> dict[str, UpstreamTask]:
        """The tasks the fake holds (those of ``ids`` if given), by id."""
        async with httpx.AsyncClient(timeout=60) as client:
            response = await client.get(self.url + "/_bench/tasks", params={"id": list(ids)})
        response.raise_for_status()
        return {row[0]: UpstreamTask(*row) for row in response.json()["tasks"]}


def requests_served(stats: dict[str, Any]) -> int:
    """The API and video requests the fake counted."""
    names = ("create_requests", "gets", "lists", "deletes", "download_requests")
    return sum(int(stats[name]) for name in names)


@contextlib.contextmanager
def running_fake(folder: Path, low: float, high: float) -> Iterator[Fake]:
    """A fake Ark subprocess (its own session) whose tasks run ``low`` to ``high`` s."""
    port = free_port()
    log = folder / f"fake-{port}.log"
    code = "import sys; from bench.upstream import serve_fake; serve_fake(sys.argv[1:])"
    command = [sys.executable, "-c", code, "--port", str(port)]
    command += ["--min-seconds", str(low), "--max-seconds", str(high)]
    with log.open("wb") as out:
        process = subprocess.Popen(
            command,
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
            start_new_session=True,
        )
    fake = Fake(process, f"http://127.0.0.1:{port}")
    try:
        deadline = time.monotonic() + 30
        while True:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the fake Ark did not start:\n{log.read_text()[-2000:]}")
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(fake.url + "/_fake/stats", timeout=2).status_code == 200:
                    break
            time.sleep(0.05)
        yield fake
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


# what a run measured ------------------------------------------------------------------


@dataclass
class Polled:
    """One run's tasks at the fake (in the order it received them) and their polling."""

    interval: float
    gets: int  # task GETs the fake served
    created: list[float]  # at the fake
    ended: list[float]  # at the fake
    seen: list[float]  # when the poller saw it succeeded
    task_gets: list[int]  # GETs of each task
    cpu: float  # the poller's CPU seconds over the run
    waited: float  # seconds its event loop was runnable without a core
    fake_cpu: float
    fake_requests: int
    seconds: float  # from the first create to the last task done

    @property
    def tasks(self) -> int:
        return len(self.created)

    @property
    def watched(self) -> float:
        """Σ (seen - created): the time the tasks were watched."""
        return sum(s - c for s, c in zip(self.seen, self.created, strict=True))

    @property
    def run_times(self) -> list[float]:
        return [e - c for e, c in zip(self.ended, self.created, strict=True)]

    @property
    def gets_per_interval(self) -> float:
        return self.gets / (self.watched / self.interval)

    @property
    def gets_per_run_interval(self) -> float:
        return self.gets / (sum(self.run_times) / self.interval)

    @property
    def on_time(self) -> list[int]:
        """Each task's GETs from a poller exactly on time: ceil(run / interval)."""
        return [math.ceil(run / self.interval) for run in self.run_times]

    @property
    def on_time_per_run_interval(self) -> float:
        return sum(self.on_time) / (sum(self.run_times) / self.interval)

    @property
    def extra(self) -> list[int]:
        """Each task's GETs beyond the on-time count (a double or early poll)."""
        return [g - n for g, n in zip(self.task_gets, self.on_time, strict=True)]

    @property
    def detection(self) -> list[float]:
        """Upstream end → the poll that saw it, per task."""
        return [s - e for s, e in zip(self.seen, self.ended, strict=True)]

    @property
    def cpu_per_1000(self) -> float:
        return self.cpu / self.tasks * 1000

    @property
    def core_share_per_1000(self) -> float:
        """The poller's CPU over the time it watched, per 1,000 tasks: a share of a core."""
        return self.cpu / self.watched * 1000

    @property
    def fake_cost(self) -> float:
        """The fake's CPU seconds per request."""
        return self.fake_cpu / max(self.fake_requests, 1)


@dataclass
class ReelgateRun:
    """A reelgate run: its polling, what followed it, and its database writes."""

    polled: Polled
    downloaded: list[float]  # when each task's download began at the fake
    done: list[float]  # completed_at
    events: list[int]  # each task's events
    arrivals: list[float]  # when the API took each task, from the first, in order
    writes: dict[str, int]  # rows written per table
    client: list[float]  # end → SUCCESS as a polling client saw it, the sample
    api_cpu: float
    create_seconds: float  # the creates through the API
    submit_seconds: float  # until the fake had every task
    costs: dict[str, float] | None  # the worker's fitted CPU seconds per GET, create, …

    @property
    def delay(self) -> list[float]:
        return [d - e for d, e in zip(self.done, self.polled.ended, strict=True)]

    @property
    def rehost_wait(self) -> list[float]:
        """REHOSTING → the download's start: the wait for a re-host slot."""
        return [d - s for d, s in zip(self.downloaded, self.polled.seen, strict=True)]

    @property
    def rehost(self) -> list[float]:
        """The download's start → SUCCESS: the re-host itself."""
        return [d - s for d, s in zip(self.done, self.downloaded, strict=True)]

    @property
    def task_writes(self) -> float:
        return float(sum(self.writes.get(name, 0) for name in TASK_TABLES))

    @property
    def explained(self) -> list[int]:
        """Each task's writes as its events tell: the insert and its event, an update and
        an event per later recorded move, the learned duration's upsert."""
        return [2 * events + 1 for events in self.events]


# reelgate -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    """The size of the run the options ask for."""

    tasks: int
    low: float
    high: float
    interval: float
    sample: int
    concurrency: int
    rehost_concurrency: int | None


def plan(args: argparse.Namespace) -> Plan:
    quick = args.quick
    low, high = QUICK_RUN_SECONDS if quick else RUN_SECONDS
    return Plan(
        tasks=args.tasks or (QUICK_TASKS if quick else TASKS),
        low=args.min_seconds if args.min_seconds is not None else low,
        high=args.max_seconds if args.max_seconds is not None else high,
        interval=args.interval or (QUICK_INTERVAL if quick else INTERVAL),
        sample=args.sample if args.sample is not None else (QUICK_SAMPLE if quick else SAMPLE),
        concurrency=args.concurrency,
        rehost_concurrency=args.rehost_concurrency,
    )


def write_config(path: Path, fake_url: str, p: Plan) -> Path:
    """The configuration file: one Ark provider (the fake), one route, a fixed interval."""
    rehost = (
        "" if p.rehost_concurrency is None else f"rehost_concurrency = {p.rehost_concurrency}\n"
    )
    path.write_text(
        f"""\
[providers.ark]
kind = "ark"
base_url = "{fake_url}/api/v3"
api_key_env = "{KEY_ENV}"
max_concurrent = 20000
requests_per_minute = 1000000
timeout = 30

[watch]
min_interval = {p.interval}
max_interval = {p.interval}
concurrency = {p.concurrency}
batch = 1000
{rehost}
[[routes."{MODEL}"]]
provider = "ark"
"""
    )
    return path


@dataclass
class Deployment:
    """A running reelgate (one API, one worker) in front of a fake, on a fresh database."""

    url: str  # the database
    base_url: str  # the API
    key: str  # an API key
    fake: Fake
    procs: Processes
    worker_pid: int
    api_pid: int


async def until(
    check: Callable[[], Awaitable[bool]], *, timeout: float, what: str, every: float = 0.1
) -> None:
    """Await ``check`` until it is true; RuntimeError after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}")
        await asyncio.sleep(every)


async def wait_api(base_url: str, procs: Processes) -> None:
    async def answers() -> bool:
        procs.check()
        with contextlib.suppress(httpx.TransportError):
            async with httpx.AsyncClient(timeout=2) as client:
                return (await client.get(base_url + "/readyz")).status_code == 200
        return False

    await until(answers, timeout=60, what="the API to answer /readyz")


async def wait_poller(url: str, procs: Processes) -> None:
    """Until the worker's remote runner has beaten (a row in ``pollers``)."""

    async def beaten() -> bool:
        procs.check()
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            with contextlib.suppress(psycopg.errors.UndefinedTable):
                row = await (await conn.execute("SELECT count(*) FROM pollers")).fetchone()
                return bool(row and row[0])
        return False

    await until(beaten, timeout=60, what="the worker's poller to start")


async def create_all(base_url: str, key: str, ids: list[str], clients: int) -> None:
    """Create ``len(ids)`` tasks through the API, ``clients`` at a time; fill in their ids."""
    numbers = iter(range(len(ids)))
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)

    async def client_loop(client: httpx.AsyncClient) -> None:
        for n in numbers:
            form = {"prompt": prompt(n), "model": MODEL, "seconds": "4", "size": "16:9"}
            response = await client.post("/v1/videos", data=form)
            if response.status_code != 200:
                raise RuntimeError(f"create answered {response.status_code}: {response.text}")
            ids[n] = response.json()["id"]

    headers = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(
        base_url=base_url, headers=headers, limits=limits, timeout=60
    ) as client:
        await asyncio.gather(*(client_loop(client) for _ in range(clients)))


async def report_progress(url: str, started: float) -> None:
    """Every ``PROGRESS`` seconds, how many tasks are in each phase (on stderr)."""
    statement = "SELECT phase, count(*) FROM tasks GROUP BY phase ORDER BY phase"
    while True:
        await asyncio.sleep(PROGRESS)
        with contextlib.suppress(psycopg.Error):
            async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
                rows = await (await conn.execute(statement)).fetchall()
            phases = ", ".join(f"{phase} {count:,}" for phase, count in rows)
            say(f"{time.perf_counter() - started:.0f} s: {phases}")


async def sample_cpu(d: Deployment, samples: list[tuple[float, ...]]) -> None:
    """Each second: the time, the worker's CPU, the fake's GETs, creates and downloads."""
    while True:
        stats = await d.fake.stats()
        samples.append(
            (
                time.perf_counter(),
                cpu_seconds(d.worker_pid),
                float(stats["gets"]),
                float(stats["create_requests"]),
                float(stats["download_requests"]),
            )
        )
        await asyncio.sleep(1.0)


def fit_costs(samples: Sequence[tuple[float, ...]]) -> dict[str, float] | None:
    """The worker's CPU seconds per GET, create and download, and per second besides:
    least squares over each second's increments (None with too few seconds)."""
    if len(samples) < 30:
        return None
    steps = np.diff(np.array(samples), axis=0)
    seconds, cpu, gets, creates, downloads = steps.T
    design = np.column_stack([gets, creates, downloads, seconds])
    coefficients = np.linalg.lstsq(design, cpu, rcond=None)[0]
    return dict(zip(("get", "create", "download", "second"), map(float, coefficients), strict=True))


async def watch_as_client(client: httpx.AsyncClient, task_id: str, ended: float) -> float:
    """From the task's upstream end, GET it every ``CLIENT_POLL`` s; end → SUCCESS seen."""
    await asyncio.sleep(max(0.0, ended - time.time()))
    while True:
        response = await client.get(f"/v1/videos/{task_id}")
        status = response.json().get("status")
        if status == "SUCCESS":
            return time.time() - ended
        if status in ("FAILED", "ERROR"):
            raise RuntimeError(f"task {task_id} ended {status}: {response.text}")
        await asyncio.sleep(CLIENT_POLL)


async def watch_sample(d: Deployment, ids: list[str], numbers: Sequence[int]) -> list[float]:
    """Watch tasks ``numbers`` as a client would, from their end at the fake (learnt once
    the worker has recorded their upstream id); end → SUCCESS seen, for each."""
    pending, watchers = set(numbers), []
    statement = "SELECT id, upstream_id FROM tasks WHERE id = ANY(%s) AND upstream_id IS NOT NULL"
    headers = {"Authorization": f"Bearer {d.key}"}
    async with (
        httpx.AsyncClient(base_url=d.base_url, headers=headers, timeout=30) as client,
        await psycopg.AsyncConnection.connect(d.url, autocommit=True) as conn,
    ):
        try:
            while pending:
                known = {ids[n]: n for n in pending if ids[n]}
                rows = await (await conn.execute(statement, (list(known),))).fetchall()
                upstream = await d.fake.tasks([up for _, up in rows]) if rows else {}
                for task_id, up in rows:
                    pending.discard(known[task_id])
                    watch = watch_as_client(client, task_id, upstream[up].ended)
                    watchers.append(asyncio.create_task(watch))
                await asyncio.sleep(0.5)
            return list(await asyncio.gather(*watchers))
        finally:
            for watcher in watchers:
                watcher.cancel()


async def wait_done(url: str, tasks: int, procs: Processes, timeout: float) -> None:
    """Until ``tasks`` tasks are SUCCESS; fails on any other end, a dead process, or time."""
    deadline = time.monotonic() + timeout
    statement = "SELECT status, count(*) FROM tasks GROUP BY status"
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        while True:
            counts = dict(await (await conn.execute(statement)).fetchall())
            if set(counts) - {"SUBMITTED", "IN_PROGRESS", "SUCCESS"}:
                raise RuntimeError(f"tasks ended otherwise than SUCCESS: {counts}")
            if counts.get("SUCCESS", 0) >= tasks:
                return
            procs.check()
            if time.monotonic() > deadline:
                raise RuntimeError(f"not every task was SUCCESS after {timeout:.0f} s: {counts}")
            await asyncio.sleep(1.0)


@dataclass
class _Drive:
    """What ``drive`` gathered while the processes ran."""

    gets: int
    cpu: float
    waited: float
    api_cpu: float
    fake_cpu: float
    fake_requests: int
    seconds: float
    create_seconds: float
    submit_seconds: float
    client: list[float]
    costs: dict[str, float] | None


async def drive(d: Deployment, p: Plan) -> _Drive:
    """Create the tasks, watch a sample as a client, wait until every one is SUCCESS."""
    before = await d.fake.stats()
    cpu0, waited0 = cpu_seconds(d.worker_pid), runnable_seconds(d.worker_pid)
    api0, fake0 = cpu_seconds(d.api_pid), d.fake.cpu()
    started = time.perf_counter()
    ids = [""] * p.tasks
    samples: list[tuple[float, ...]] = []
    background = [
        asyncio.create_task(report_progress(d.url, started)),
        asyncio.create_task(sample_cpu(d, samples)),
    ]
    numbers = sorted({int((k + 0.5) * p.tasks / p.sample) for k in range(p.sample)})
    clients = asyncio.create_task(watch_sample(d, ids, numbers))
    try:
        await create_all(d.base_url, d.key, ids, CLIENTS)
        create_seconds = time.perf_counter() - started

        async def all_upstream() -> bool:
            d.procs.check()
            return int((await d.fake.stats())["creates"]) - int(before["creates"]) >= p.tasks

        await until(all_upstream, timeout=300 + p.tasks / 5, what="every task at the fake")
        submit_seconds = time.perf_counter() - started
        say(
            f"{p.tasks:,} tasks created in {create_seconds:.0f} s, all at the fake after "
            f"{submit_seconds:.0f} s"
        )
        await wait_done(d.url, p.tasks, d.procs, p.high + 10 * p.interval + 300 + p.tasks / 10)
        seconds = time.perf_counter() - started
        cpu, waited = cpu_seconds(d.worker_pid) - cpu0, runnable_seconds(d.worker_pid) - waited0
        api_cpu, fake_cpu = cpu_seconds(d.api_pid) - api0, d.fake.cpu() - fake0
        after = await d.fake.stats()
        client = await asyncio.wait_for(clients, 60)
    finally:
        for job in [*background, clients]:
            job.cancel()
        await asyncio.gather(*background, clients, return_exceptions=True)
    return _Drive(
        gets=int(after["gets"]) - int(before["gets"]),
        cpu=cpu,
        waited=waited,
        api_cpu=api_cpu,
        fake_cpu=fake_cpu,
        fake_requests=requests_served(after) - requests_served(before),
        seconds=seconds,
        create_seconds=create_seconds,
        submit_seconds=submit_seconds,
        client=client,
        costs=fit_costs(samples),
    )


def task_rows(url: str) -> dict[str, tuple[float, float, float, int]]:
    """Upstream id -> (created_at, the REHOSTING event's at, completed_at, events) of every
    SUCCESS task."""
    statement = """
SELECT t.upstream_id, t.created_at, min(e.at) FILTER (WHERE e.detail LIKE %s),
    t.completed_at, count(*)
FROM tasks t JOIN task_events e ON e.task_id = t.id
WHERE t.status = 'SUCCESS' GROUP BY t.id"""
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(statement, (REHOSTING + "%",)).fetchall()
    return {up: (created, seen, done, events) for up, created, seen, done, events in rows}


def table_writes(url: str) -> dict[str, int]:
    """Rows inserted, updated and deleted per table, as PostgreSQL's statistics count them.

    Read once every reelgate process has exited (a backend flushes its counts as it
    ends), again until two reads agree, as the last flushes land.
    """
    statement = "SELECT relname, n_tup_ins + n_tup_upd + n_tup_del FROM pg_stat_user_tables"
    last: dict[str, int] | None = None
    for _ in range(40):
        with psycopg.connect(url, autocommit=True) as conn:
            now = {name: int(n) for name, n in conn.execute(statement).fetchall()}
        if now == last:
            return now
        last = now
        time.sleep(0.25)
    return last or {}


async def run_reelgate(args: argparse.Namespace, p: Plan) -> ReelgateRun:
    """``p.tasks`` tasks through one API and one worker to a fake Ark whose runs take
    ``p.low`` to ``p.high`` s, until every one is SUCCESS; what it cost."""
    with (
        temporary_database(args.admin_url) as url,
        tempfile.TemporaryDirectory(prefix="rg-bench-upstream-") as tmp,
    ):
        folder = Path(tmp)
        with running_fake(folder, p.low, p.high) as fake:
            env = {
                "REELGATE_DATABASE_URL": url,
                "REELGATE_STORAGE_URL": f"file://{folder / 'blobs'}",
                "REELGATE_SIGNING_SECRET": SIGNING_SECRET,
                "REELGATE_CONFIG": str(write_config(folder / "reelgate.toml", fake.url, p)),
                "REELGATE_LOG_LEVEL": "warning",
                KEY_ENV: FAKE_KEY,
            }
            procs = Processes(env, folder)
            try:
                port = free_port()
                api, _ = procs.start("api", "serve", "--workers", "0", "--port", str(port))
                base_url = f"http://127.0.0.1:{port}"
                await wait_api(base_url, procs)
                worker, _ = procs.start("worker", "worker", "--concurrency", "1")
                await wait_poller(url, procs)
                key = (folder / "api" / "first-api-key").read_text().strip()
                deployment = Deployment(url, base_url, key, fake, procs, worker.pid, api.pid)
                with options.profiled(args, worker.pid, "upstream-worker"):
                    run = await drive(deployment, p)
            finally:
                procs.stop()
            upstream = await fake.tasks()
        writes = table_writes(url)
        rows = task_rows(url)
    return _reelgate_run(p, run, upstream, rows, writes)


def _reelgate_run(
    p: Plan,
    run: _Drive,
    upstream: dict[str, UpstreamTask],
    rows: dict[str, tuple[float, float, float, int]],
    writes: dict[str, int],
) -> ReelgateRun:
    missing = [t for t in upstream if t not in rows or upstream[t].downloaded is None]
    if missing or len(rows) != len(upstream):
        raise RuntimeError(
            f"{len(missing)} of {len(upstream)} upstream tasks lack a SUCCESS, a REHOSTING "
            f"event or a download; {len(rows)} tasks SUCCESS"
        )
    order = sorted(upstream.values(), key=lambda t: t.created)
    polled = Polled(
        interval=p.interval,
        gets=run.gets,
        created=[t.created for t in order],
        ended=[t.ended for t in order],
        seen=[rows[t.id][1] for t in order],
        task_gets=[t.gets for t in order],
        cpu=run.cpu,
        waited=run.waited,
        fake_cpu=run.fake_cpu,
        fake_requests=run.fake_requests,
        seconds=run.seconds,
    )
    arrivals = sorted(row[0] for row in rows.values())
    return ReelgateRun(
        polled=polled,
        downloaded=[t.downloaded or 0.0 for t in order],
        done=[rows[t.id][2] for t in order],
        events=[rows[t.id][3] for t in order],
        arrivals=[at - arrivals[0] for at in arrivals],
        writes=writes,
        client=run.client,
        api_cpu=run.api_cpu,
        create_seconds=run.create_seconds,
        submit_seconds=run.submit_seconds,
        costs=run.costs,
    )


# the naive poller -------------------------------------------------------------------------


async def naive_poll(
    fake_url: str, arrivals: Sequence[float], interval: float, concurrency: int
) -> tuple[dict[str, float], int]:
    """One coroutine per task: at ``arrivals[k]`` s from now create task k at the fake, then
    sleep the interval and GET it until it succeeded, with at most ``concurrency`` requests
    in flight. Upstream id -> when a GET saw it succeeded, and the requests sent."""
    seen: dict[str, float] = {}
    sent = 0
    slots = asyncio.Semaphore(concurrency)
    headers = {"Authorization": f"Bearer {FAKE_KEY}"}
    async with httpx.AsyncClient(
        base_url=fake_url, headers=headers, limits=LIMITS, timeout=TIMEOUT
    ) as client:
        start = time.perf_counter()

        async def one(n: int, arrival: float) -> None:
            nonlocal sent
            await asyncio.sleep(max(0.0, start + arrival - time.perf_counter()))
            body = {
                "model": MODEL,
                "content": [{"type": "text", "text": prompt(n)}],
                "duration": 4,
                "ratio": "16:9",
                "resolution": "720p",
            }
            async with slots:
                response = await client.post(API, json=body)
            sent += 1
            response.raise_for_status()
            task_id = response.json()["id"]
            while True:
                await asyncio.sleep(interval)
                async with slots:
                    response = await client.get(f"{API}/{task_id}")
                sent += 1
                response.raise_for_status()
                if response.json()["status"] == "succeeded":
                    seen[task_id] = time.time()
                    return

        await asyncio.gather(*(one(n, arrival) for n, arrival in enumerate(arrivals)))
    return seen, sent


@dataclass
class NaiveRun:
    """The naive poller's run."""

    polled: Polled
    requests: int  # the creates and GETs it sent

    @property
    def per_request(self) -> float:
        """Its CPU seconds per request (a create costs a client what a GET does)."""
        return self.polled.cpu / self.requests


def run_naive(p: Plan, arrivals: Sequence[float]) -> NaiveRun:
    """The naive poller in this process against a fresh fake with the same seed, each task
    arriving when reelgate's API took its twin; its CPU is this process's."""
    with (
        tempfile.TemporaryDirectory(prefix="rg-bench-naive-") as tmp,
        running_fake(Path(tmp), p.low, p.high) as fake,
    ):
        before = asyncio.run(fake.stats())
        me = os.getpid()
        cpu0, waited0, fake0 = cpu_seconds(me), runnable_seconds(me), fake.cpu()
        started = time.perf_counter()
        seen, sent = asyncio.run(naive_poll(fake.url, arrivals, p.interval, p.concurrency))
        seconds = time.perf_counter() - started
        cpu, waited = cpu_seconds(me) - cpu0, runnable_seconds(me) - waited0
        fake_cpu, after = fake.cpu() - fake0, asyncio.run(fake.stats())
        upstream = asyncio.run(fake.tasks())
    order = sorted(upstream.values(), key=lambda t: t.created)
    polled = Polled(
        interval=p.interval,
        gets=int(after["gets"]) - int(before["gets"]),
        created=[t.created for t in order],
        ended=[t.ended for t in order],
        seen=[seen[t.id] for t in order],
        task_gets=[t.gets for t in order],
        cpu=cpu,
        waited=waited,
        fake_cpu=fake_cpu,
        fake_requests=requests_served(after) - requests_served(before),
        seconds=seconds,
    )
    return NaiveRun(polled, sent)


# rows -----------------------------------------------------------------------------------

NUMBERS = ("9 gets", "9 delay", "9 writes", "9 cpu")
_PATHS = {
    "9 gets": "upstream polling: GETs per task per poll interval",
    "9 delay": "upstream polling: upstream end → SUCCESS visible",
    "9 writes": "upstream polling: database writes per task",
    "9 cpu": "upstream polling: the poller's CPU per 1,000 tasks",
}
_TARGETS = {
    "9 gets": f"≤ {GETS_TARGET}",
    "9 delay": "median ≤ interval + re-host",
    "9 writes": "constant with time in flight (± 2 %)",
    "9 cpu": "reported (vs the naive poller)",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """This benchmark's own options."""
    parser.add_argument(
        "--tasks", type=int, default=None, help=f"tasks [{TASKS:,}, quick {QUICK_TASKS}]"
    )
    parser.add_argument(
        "--interval",
        type=float,
        default=None,
        help=f"the fixed poll interval, s [{INTERVAL:g}, quick {QUICK_INTERVAL:g}]",
    )
    parser.add_argument(
        "--min-seconds",
        type=float,
        default=None,
        help=f"shortest run at the fake, s [{RUN_SECONDS[0]:g}, quick {QUICK_RUN_SECONDS[0]:g}]",
    )
    parser.add_argument(
        "--max-seconds",
        type=float,
        default=None,
        help=f"longest run at the fake, s [{RUN_SECONDS[1]:g}, quick {QUICK_RUN_SECONDS[1]:g}]",
    )
    parser.add_argument(
        "--concurrency",
        type=int,
        default=CONCURRENCY,
        help=f"[watch] concurrency, and the naive poller's requests in flight [{CONCURRENCY}]",
    )
    parser.add_argument(
        "--rehost-concurrency",
        type=int,
        default=None,
        help="[watch] rehost_concurrency [reelgate's default]",
    )
    parser.add_argument(
        "--sample",
        type=int,
        default=None,
        help=f"tasks also watched by a polling client [{SAMPLE}, quick {QUICK_SAMPLE}]",
    )
    parser.add_argument("--admin-url", default=PG_ADMIN_URL, help="PostgreSQL URL to create DBs")


def measure(args: argparse.Namespace) -> list[Row]:
    """The reelgate run, then the naive poller's with the same arrivals; four rows."""
    p = plan(args)
    try:
        main = asyncio.run(run_reelgate(args, p))
        say(f"reelgate's run took {main.polled.seconds:.0f} s; now the naive poller's")
        naive = run_naive(p, main.arrivals)
        say(f"the naive poller's run took {naive.polled.seconds:.0f} s")
    except (RuntimeError, OSError, psycopg.Error, httpx.HTTPError) as exc:
        message = " ".join(str(exc).split())[-600:]
        reason = f"{type(exc).__name__}: {message}"
        return [failed_row(number, _PATHS[number], _TARGETS[number], reason) for number in NUMBERS]
    scale = (
        f"{p.tasks:,} tasks ending {p.low:g}-{p.high:g} s after their create at a fake Ark, "
        f"poll interval {p.interval:g} s, [watch] concurrency {p.concurrency}"
    )
    return [
        _gets_row(scale, main.polled, naive.polled),
        _delay_row(scale, main, naive.polled),
        _writes_row(p, main),
        _cpu_row(scale, main, naive),
    ]


def _gets_row(scale: str, m: Polled, naive: Polled) -> Row:
    figure, base = m.gets_per_interval, naive.gets_per_interval
    extra = m.extra
    notes = (
        f"{scale}: {m.gets:,} task GETs at the fake over {m.watched / 60:,.0f} task-minutes "
        f"watched (create at the fake → the poll that saw it succeeded): {figure:.3f} GETs "
        f"per task per interval, an effective interval of {m.interval / figure:.1f} s; the "
        f"naive poller (one coroutine per task; same fake, arrivals and run times) "
        f"{naive.gets:,} GETs, {base:.3f} ({naive.interval / base:.1f} s). Over the run time "
        f"at the fake instead: reelgate {m.gets_per_run_interval:.3f}, naive "
        f"{naive.gets_per_run_interval:.3f}, a poller exactly on time "
        f"{m.on_time_per_run_interval:.3f} (the last interval waits for an end inside it). "
        f"GETs of one task beyond its on-time count ceil(run/interval): at most {max(extra)} "
        f"({sum(1 for e in extra if e > 0):,} tasks with any); naive at most "
        f"{max(naive.extra)}. The fake's own cost: {m.fake_cost * 1000:.2f} ms CPU per "
        f"request ({m.fake_requests:,} requests, {m.fake_cpu:.1f} s) in reelgate's run, "
        f"{naive.fake_cost * 1000:.2f} ms in the naive one."
    )
    values = {
        "gets": m.gets,
        "gets_per_interval": figure,
        "naive_gets": naive.gets,
        "naive_gets_per_interval": base,
        "gets_per_run_interval": m.gets_per_run_interval,
        "naive_gets_per_run_interval": naive.gets_per_run_interval,
        "on_time_per_run_interval": m.on_time_per_run_interval,
        "max_extra_gets": max(extra),
        "fake_cpu_per_request_s": m.fake_cost,
        "naive_fake_cpu_per_request_s": naive.fake_cost,
    }
    return Row(
        "9 gets",
        _PATHS["9 gets"],
        f"{figure:.3f} GETs",
        f"{base:.3f} GETs (naive poller)",
        figure / base,
        _TARGETS["9 gets"],
        figure <= GETS_TARGET,
        notes,
        values,
    )


def _spread(values: Sequence[float]) -> str:
    return f"median {statistics.median(values):.2f} s, p95 {quantile(values, 0.95):.2f} s"


def _delay_row(scale: str, main: ReelgateRun, naive: Polled) -> Row:
    m = main.polled
    delay, rehost = main.delay, main.rehost
    d50, n50, r50 = (statistics.median(x) for x in (delay, naive.detection, rehost))
    client = main.client
    seen = (
        f"{_spread(client)} ({len(client)} tasks spread over the run, GET every "
        f"{CLIENT_POLL:g} s from their end)"
        if client
        else "no task sampled"
    )
    notes = (
        f"{scale}: upstream end (the fake's clock) → SUCCESS committed (completed_at), every "
        f"task: {_spread(delay)}, max {max(delay):.1f} s. Of which the poll (end → "
        f"REHOSTING): {_spread(m.detection)}; the wait for a re-host slot (REHOSTING → the "
        f"download's start): {_spread(main.rehost_wait)}; the re-host itself (download, "
        f"probe, store, SUCCESS): {_spread(rehost)}. As a client saw it through the API: "
        f"{seen}. The naive poller (nothing to re-host): end → its GET saw it, "
        f"{_spread(naive.detection)}."
    )
    values = {
        "median_s": d50,
        "p95_s": quantile(delay, 0.95),
        "poll_median_s": statistics.median(m.detection),
        "rehost_wait_median_s": statistics.median(main.rehost_wait),
        "rehost_median_s": r50,
        "naive_median_s": n50,
        "naive_p95_s": quantile(naive.detection, 0.95),
        "interval_s": m.interval,
    }
    if client:
        values["client_median_s"] = statistics.median(client)
    return Row(
        "9 delay",
        _PATHS["9 delay"],
        f"median {d50:.2f} s, p95 {quantile(delay, 0.95):.2f} s",
        f"median {n50:.2f} s (naive, no re-host)",
        d50 / n50 if n50 > 0 else None,
        f"median ≤ {m.interval:g} s + re-host {r50:.2f} s",
        d50 <= m.interval + r50,
        notes,
        values,
    )


def _writes_row(p: Plan, main: ReelgateRun) -> Row:
    m = main.polled
    total = main.task_writes
    per_task = total / m.tasks
    unexplained = total - sum(main.explained)
    order = sorted(range(m.tasks), key=lambda i: m.run_times[i])
    third = max(m.tasks // 3, 1)
    short, long = order[:third], order[-third:]

    def mean(values: Sequence[float], chosen: Sequence[int]) -> float:
        return sum(values[i] for i in chosen) / len(chosen)

    def runs(chosen: Sequence[int]) -> str:
        return f"{m.run_times[chosen[0]]:.0f}-{m.run_times[chosen[-1]]:.0f} s"

    explained = [float(x) for x in main.explained]
    short_w, long_w = mean(explained, short), mean(explained, long)
    ratio = long_w / short_w
    tables = ", ".join(f"{name} {main.writes.get(name, 0) / m.tasks:.2f}" for name in TASK_TABLES)
    notes = (
        f"Rows inserted + updated + deleted (pg_stat_user_tables) over {m.tasks:,} tasks: "
        f"{per_task:.2f} per task ({tables}; the pollers' heartbeats "
        f"{main.writes.get('pollers', 0):,} in all, not per task). By task, from its "
        f"events: the shortest third (at the fake {runs(short)}, "
        f"{mean(m.task_gets, short):.1f} GETs and {mean(m.run_times, short):.0f} s each) "
        f"{short_w:.2f}; the longest third ({runs(long)}, {mean(m.task_gets, long):.1f} GETs "
        f"and {mean(m.run_times, long):.0f} s each) {long_w:.2f}; writes the events do not "
        f"explain: {unexplained:,.0f}."
    )
    values = {
        "writes_per_task": per_task,
        "short_third": short_w,
        "long_third": long_w,
        "unexplained": unexplained,
        "short_third_gets": mean(m.task_gets, short),
        "long_third_gets": mean(m.task_gets, long),
    }
    holds = abs(ratio - 1) <= WRITES_TOLERANCE and abs(unexplained) <= WRITES_TOLERANCE * total
    return Row(
        "9 writes",
        _PATHS["9 writes"],
        f"{per_task:.2f} per task; longest third {long_w:.2f}",
        f"{short_w:.2f} (shortest third)",
        ratio,
        _TARGETS["9 writes"],
        holds,
        notes,
        values,
    )


def _cpu_row(scale: str, main: ReelgateRun, naive: NaiveRun) -> Row:
    m, n = main.polled, naive.polled
    figure, base = m.cpu_per_1000, n.cpu_per_1000
    costs = main.costs
    split = (
        "too short a run to split"
        if costs is None
        else f"{costs['get'] * 1e3:.2f} ms per GET, {costs['create'] * 1e3:.2f} ms per "
        f"submission, {costs['download'] * 1e3:.2f} ms per re-host, "
        f"{costs['second'] * 1e3:.0f} ms per second besides (a least-squares fit of its CPU "
        f"in each second on the fake's GETs, creates and downloads in it)"
    )
    notes = (
        f"{scale}: the worker process (user + system, /proc) from the first create to the "
        f"last SUCCESS, {m.seconds:.0f} s: {m.cpu:.1f} s = {figure:.2f} s per 1,000 tasks, "
        f"{m.core_share_per_1000:.1%} of a core per 1,000 tasks in flight, "
        f"{m.cpu / m.seconds:.0%} of a core on average (its event loop waited "
        f"{m.waited:.0f} s, runnable, for a core). It submits, polls and re-hosts: {split}. "
        f"The naive poller (creates and polls; in this process) over {n.seconds:.0f} s: "
        f"{n.cpu:.1f} s = {base:.2f} s per 1,000 tasks, {n.core_share_per_1000:.1%} of a "
        f"core per 1,000 in flight, {naive.per_request * 1e3:.2f} ms per request (waited "
        f"{n.waited:.0f} s). The API process: {main.api_cpu:.1f} s (the creates took "
        f"{main.create_seconds:.0f} s; the fake had every task after "
        f"{main.submit_seconds:.0f} s)."
    )
    values = {
        "cpu_s": m.cpu,
        "cpu_per_1000_s": figure,
        "core_share_per_1000": m.core_share_per_1000,
        "waited_s": m.waited,
        "seconds": m.seconds,
        "naive_cpu_s": n.cpu,
        "naive_cpu_per_1000_s": base,
        "naive_core_share_per_1000": n.core_share_per_1000,
        "naive_cpu_per_request_s": naive.per_request,
        "naive_waited_s": n.waited,
        "naive_seconds": n.seconds,
        "api_cpu_s": main.api_cpu,
        "create_seconds": main.create_seconds,
        "submit_seconds": main.submit_seconds,
    }
    if costs is not None:
        values.update({f"cpu_per_{name}_s": value for name, value in costs.items()})
    return Row(
        "9 cpu",
        _PATHS["9 cpu"],
        f"{figure:.2f} s per 1,000 tasks ({m.core_share_per_1000:.1%} of a core "
        f"per 1,000 in flight)",
        f"{base:.2f} s ({n.core_share_per_1000:.1%}; naive poller)",
        figure / base,
        _TARGETS["9 cpu"],
        None,
        notes,
        values,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run #9, print its rows, write them where ``--json`` says."""
    parser = options.parser(__doc__, prog="python -m bench.upstream")
    add_arguments(parser)
    args = parser.parse_args(argv)
    options.finish(args, measure(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
