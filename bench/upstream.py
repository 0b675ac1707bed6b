"""#9: upstream polling at scale: 10,000 tasks in flight at a fake Ark, against a naive poller.

reelgate on PostgreSQL (a throwaway database): one API process (``reelgate serve
--workers 0``) and ONE ``reelgate worker``, with a configuration file that routes
``doubao-seedance-2-0`` to a fake Ark (``reelgate.backends.remote.fakes.ark``) running
as its own process, so that its CPU is measured apart. The provider allows 20,000 tasks
in flight and 1,000,000 requests a minute; ``[watch]`` pins the poll interval
(``min_interval = max_interval = --interval``, 10 s) with ``concurrency`` 200 and
``batch`` 1,000. ``--tasks`` tasks (10,000) are created through the HTTP API, ``--clients``
at a time; the fake ends each after a random 30 to 120 s. The clock stops when every task
is SUCCESS (read from the database). The fake is the module's own app served by uvicorn
as its ``main`` does, plus one read-only route of the benchmark's, ``GET /_bench/tasks``:
each task's create and end times as floats (its Ark list API has whole seconds only).

The baseline, in the same run: a naive poller in this process, one coroutine per task
(create at the fake, then sleep the interval, GET, until ``succeeded``), with the same
HTTP client settings as reelgate's provider (httpx, 200 connections, 50 kept alive),
against a fresh fake with the same seed, replaying the reelgate run's arrival times, so
that the k-th task of both runs arrives at the same moment and runs as long.

Figures (each task's times on one clock: this machine's):

- GETs per task per poll interval = the fake's task GETs / Σ (watched / interval), where
  *watched* runs from the task's create at the fake to the poll that saw it succeeded
  (reelgate: the ``at`` of its REHOSTING event; naive: when its GET returned). A poller
  that polls each task once per interval and never twice scores 1.00, a little less with
  scheduling drift. The notes add GETs / Σ (upstream run time / interval), which also
  counts the last interval's wait for an end that falls inside it (its floor for a
  perfect poller, Σ ceil(run/interval) / Σ (run/interval), is given).
- Delay from the upstream end to SUCCESS visible: the task's ``completed_at`` (the commit
  that makes SUCCESS visible to the API) less the fake's end time, all tasks; a sample of
  ``--sample`` tasks is also polled through ``GET /v1/videos/{id}`` every 0.1 s from its
  end, as a client sees it. Target: median ≤ one interval + the median re-host time
  (REHOSTING → SUCCESS). The naive baseline has no re-host: its delay ends at its GET.
- Database writes per task: ``n_tup_ins + n_tup_upd + n_tup_del`` of ``pg_stat_user_tables``
  for ``tasks``, ``task_events`` and ``durations`` once every process has exited (a backend
  flushes its statistics then), over the tasks. Its baseline is a second reelgate run whose
  tasks are ten times shorter (``--tasks`` / 5 of them, 1 or 2 polls each instead of ~8):
  writes that grew with time in flight would differ. Target: within 2 %.
- The poller's CPU: the worker process's user + system time (``/proc/<pid>/stat``) from the
  first create to the last SUCCESS, per 1,000 tasks, and as a share of a core per 1,000
  tasks in flight (CPU / Σ watched). It includes submitting and re-hosting, which the naive
  poller does not do (it creates, and nothing else); the notes separate the cost of a poll
  by comparing each with its short run. No target; the ratio is reported.

The fake's own cost per request (its CPU over its requests) is in the notes. ``--rounds``,
``--seconds``, ``--connections`` and ``--loadgen`` do not apply (one run of each: the
runs are minutes long); ``--profile`` records the worker of the main run with py-spy.
``--quick``: 200 tasks of 2 to 5 s polled every second (the short runs: 100 tasks).
Needs the PostgreSQL server (``REELGATE_BENCH_PG_ADMIN``). Run alone:
``python -m bench.upstream [--quick] [--tasks N] [--interval S] [--min-seconds A --max-seconds B]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg

from bench import options
from bench.report import Row, failed_row
from bench.scaleout import Processes
from bench.servers import PG_ADMIN_URL, free_port, temporary_database

ROOT = Path(__file__).resolve().parent.parent
TASKS, QUICK_TASKS = 10_000, 200
RUN_SECONDS, QUICK_RUN_SECONDS = (30.0, 120.0), (2.0, 5.0)
INTERVAL, QUICK_INTERVAL = 10.0, 1.0
SAMPLE, QUICK_SAMPLE = 100, 20
SHORTER = 10  # the short runs' tasks run this many times less long
FEWER = 5  # … and are this many times fewer
PROGRESS = 15.0  # seconds between progress lines of a long run
CLIENT_POLL = 0.1  # seconds between a sampled client's GETs
MODEL = "doubao-seedance-2-0"
KEY_ENV = "REELGATE_BENCH_ARK_KEY"  # the variable that the config's api_key_env names
FAKE_KEY = "bench-upstream-ark-key"
SEED = 9  # the fakes' seed: the k-th task created runs as long in every run
SIGNING_SECRET = "bench-upstream-signing-secret-0123456789"
REHOSTING = "finished upstream"  # how the event of the move to REHOSTING begins
TASK_TABLES = ("tasks", "task_events", "durations")  # what tasks write to
WRITES_TOLERANCE = 0.02
GETS_TARGET = 1.05
TICK = os.sysconf("SC_CLK_TCK")
# reelgate's Ark adapter: httpx with these limits and timeouts (backends/remote/http.py)
LIMITS = httpx.Limits(max_connections=200, max_keepalive_connections=50)
TIMEOUT = httpx.Timeout(30.0, connect=5.0)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` (all its threads), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def prompt(n: int) -> str:
    return f"upstream bench task {n}"


# the fake -------------------------------------------------------------------------------


def serve_fake(argv: Sequence[str] | None = None) -> None:
    """Serve the fake Ark as ``python -m reelgate.backends.remote.fakes.ark`` does, plus
    ``GET /_bench/tasks``: ``[[id, prompt, created, ended], …]`` with float times."""
    import uvicorn
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from reelgate.backends.remote.fakes.ark import FakeArkSettings, fake_ark_app

    parser = argparse.ArgumentParser(description="the fake Ark of bench.upstream")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--min-seconds", type=float, required=True)
    parser.add_argument("--max-seconds", type=float, required=True)
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--api-key", default=FAKE_KEY)
    args = parser.parse_args(argv)
    settings = FakeArkSettings(
        api_keys=(args.api_key,),
        min_seconds=args.min_seconds,
        max_seconds=args.max_seconds,
        seed=args.seed,
    )
    app = fake_ark_app(settings)
    fake = app.state.fake

    async def tasks(request: Request) -> JSONResponse:
        rows = [[t.id, t.prompt, t.created, t.ended] for t in fake.tasks.values()]
        return JSONResponse({"tasks": rows})

    app.router.routes.append(Route("/_bench/tasks", tasks, methods=["GET"]))
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")


@dataclass(frozen=True)
class UpstreamTask:
    """One task as the fake saw it."""

    id: str
    prompt: str
    created: float
    ended: float


@dataclass
class Fake:
    """A fake Ark process: its URL, its process, and reads of its counters."""

    process: subprocess.Popen[bytes]
    url: str
    log: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    async def stats(self) -> dict[str, Any]:
        async with httpx.AsyncClient(timeout=30) as client:
            response = await client.get(self.url + "/_fake/stats")
        response.raise_for_status()
        data: dict[str, Any] = response.json()
        return data

    async def tasks(self) -> dict[str, UpstreamTask]:
        """Every task the fake holds, by its id."""
        async with httpx.AsyncClient(timeout=60) as client:
            response = await client.get(self.url + "/_bench/tasks")
        response.raise_for_status()
        return {row[0]: UpstreamTask(*row) for row in response.json()["tasks"]}

    def cpu(self) -> float:
        return cpu_seconds(self.pid)


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
    fake = Fake(process, f"http://127.0.0.1:{port}", log)
    try:
        deadline = time.monotonic() + 30
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"the fake Ark exited:\n{log.read_text()[-2000:]}")
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(fake.url + "/_fake/stats", timeout=2).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"the fake Ark did not start:\n{log.read_text()[-2000:]}")
            time.sleep(0.05)
        yield fake
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, 15)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, 9)
            process.wait()


# what a run measured ------------------------------------------------------------------


@dataclass
class Polled:
    """The tasks of one run at the upstream, and how they were polled."""

    interval: float
    gets: int
    created: list[float]  # at the fake
    ended: list[float]  # at the fake
    seen: list[float]  # when the poller saw it succeeded
    cpu: float  # the poller's CPU seconds over the run
    fake_cpu: float
    fake_requests: int
    seconds: float  # from the first create to the last task done

    @property
    def tasks(self) -> int:
        return len(self.created)

    @property
    def watched(self) -> float:
        """Σ (seen - created): the time the poller watched the tasks."""
        return sum(s - c for s, c in zip(self.seen, self.created, strict=True))

    @property
    def run_time(self) -> float:
        """Σ (ended - created): the time the tasks ran at the fake."""
        return sum(e - c for e, c in zip(self.ended, self.created, strict=True))

    @property
    def gets_per_interval(self) -> float:
        return self.gets / (self.watched / self.interval)

    @property
    def gets_per_run_interval(self) -> float:
        return self.gets / (self.run_time / self.interval)

    @property
    def floor(self) -> float:
        """GETs per run interval of a perfect poller: Σ ceil(run / interval) / Σ (run / interval)."""
        needed = sum(
            math.ceil((e - c) / self.interval) for e, c in zip(self.ended, self.created, strict=True)
        )
        return needed / (self.run_time / self.interval)

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
    """One reelgate run: its polling, its end-to-end delays and its database writes."""

    polled: Polled
    done: list[float]  # completed_at, per task, as ``polled``
    client: list[float]  # end → SUCCESS seen by a polling client, the sample
    writes: dict[str, int]  # per table
    create_seconds: float
    api_cpu: float
    offsets: list[float] = field(default_factory=list)  # arrivals at the fake, from the first

    @property
    def delay(self) -> list[float]:
        return [d - e for d, e in zip(self.done, self.polled.ended, strict=True)]

    @property
    def rehost(self) -> list[float]:
        return [d - s for d, s in zip(self.done, self.polled.seen, strict=True)]

    @property
    def writes_per_task(self) -> float:
        return sum(self.writes.get(name, 0) for name in TASK_TABLES) / self.polled.tasks


def quantile(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile of ``values`` (nearest rank)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


# reelgate ---------------------------------------------------------------------------


def write_config(path: Path, fake_url: str, args: argparse.Namespace, interval: float) -> Path:
    """The configuration file: one Ark provider (the fake), one route, a fixed interval."""
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
min_interval = {interval}
max_interval = {interval}
concurrency = {args.concurrency}
batch = {args.batch}

[[routes."{MODEL}"]]
provider = "ark"
"""
    )
    return path


async def until(
    check: Callable[[], Awaitable[bool]], *, timeout: float, what: str, every: float = 0.1
) -> None:
    """Await ``check`` until it is true; RuntimeError after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}")
        await asyncio.sleep(every)


async def create_all(base_url: str, key: str, count: int, clients: int) -> list[str]:
    """Create ``count`` tasks through the API, ``clients`` at a time; their ids by number."""
    ids = [""] * count
    numbers = iter(range(count))
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
    return ids


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


async def statuses(url: str) -> dict[str, int]:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        cursor = await conn.execute("SELECT status, count(*) FROM tasks GROUP BY status")
        return {status: int(count) for status, count in await cursor.fetchall()}


async def wait_done(url: str, tasks: int, procs: Processes, timeout: float) -> None:
    """Until ``tasks`` tasks are SUCCESS; fails on any other end, a dead process, or time.

    Says how far it got every ``PROGRESS`` seconds (on stderr).
    """
    deadline = time.monotonic() + timeout
    said = time.monotonic()
    while True:
        counts = await statuses(url)
        if set(counts) - {"SUBMITTED", "IN_PROGRESS", "SUCCESS"}:
            raise RuntimeError(f"tasks ended otherwise than SUCCESS: {counts}")
        if counts.get("SUCCESS", 0) >= tasks:
            return
        procs.check()
        if time.monotonic() - said >= PROGRESS:
            said = time.monotonic()
            print(f"bench: {counts}", file=sys.stderr, flush=True)
        if time.monotonic() > deadline:
            raise RuntimeError(f"not every task was SUCCESS after {timeout:.0f} s: {counts}")
        await asyncio.sleep(0.25)


def task_times(url: str) -> dict[str, tuple[float, float]]:
    """Upstream id -> (REHOSTING event's at, completed_at) of every SUCCESS task."""
    statement = """
SELECT t.upstream_id, min(e.at), t.completed_at FROM tasks t
JOIN task_events e ON e.task_id = t.id AND e.detail LIKE %s
WHERE t.status = 'SUCCESS' GROUP BY t.id"""
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(statement, (REHOSTING + "%",)).fetchall()
    return {upstream: (float(seen), float(done)) for upstream, seen, done in rows}


def table_writes(url: str) -> dict[str, int]:
    """Rows inserted, updated and deleted per table, as PostgreSQL's statistics count them.

    Read once every reelgate process has exited (a backend flushes its counts as it
    ends); read again until two reads agree, as the last flushes land.
    """
    statement = "SELECT relname, n_tup_ins + n_tup_upd + n_tup_del FROM pg_stat_user_tables"
    last: dict[str, int] | None = None
    for _ in range(20):
        with psycopg.connect(url, autocommit=True) as conn:
            now = {name: int(n) for name, n in conn.execute(statement).fetchall()}
        if now == last:
            return now
        last = now
        time.sleep(0.25)
    return last or {}


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


async def wait_api(base_url: str, procs: Processes) -> None:
    async def answers() -> bool:
        procs.check()
        with contextlib.suppress(httpx.TransportError):
            async with httpx.AsyncClient(timeout=2) as client:
                return (await client.get(base_url + "/readyz")).status_code == 200
        return False

    await until(answers, timeout=60, what="the API to answer /readyz")


async def run_reelgate(
    args: argparse.Namespace,
    *,
    tasks: int,
    low: float,
    high: float,
    interval: float,
    sample: int,
    label: str,
) -> ReelgateRun:
    """``tasks`` tasks through one API and one worker to a fake Ark whose runs take
    ``low`` to ``high`` s; every task SUCCESS; what it cost."""
    with (
        temporary_database(args.admin_url) as url,
        tempfile.TemporaryDirectory(prefix="rg-bench-upstream-") as tmp,
    ):
        folder = Path(tmp)
        with running_fake(folder, low, high) as fake:
            config = write_config(folder / "reelgate.toml", fake.url, args, interval)
            env = {
                "REELGATE_DATABASE_URL": url,
                "REELGATE_STORAGE_URL": f"file://{folder / 'blobs'}",
                "REELGATE_SIGNING_SECRET": SIGNING_SECRET,
                "REELGATE_CONFIG": str(config),
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
                with options.profiled(args, worker.pid, f"upstream-{label}-worker"):
                    run = await _drive(
                        url, base_url, key, fake, procs, tasks, high, interval, sample,
                        worker.pid, api.pid,
                    )  # fmt: skip
            finally:
                procs.stop()
            writes = table_writes(url)
            times = task_times(url)
    return _reelgate_result(run, times, writes, interval)


@dataclass
class _Drive:
    """What ``_drive`` gathered while the processes ran."""

    upstream: dict[str, UpstreamTask]
    gets: int
    cpu: float
    api_cpu: float
    fake_cpu: float
    fake_requests: int
    seconds: float
    create_seconds: float
    client: list[float]


async def _drive(
    url: str,
    base_url: str,
    key: str,
    fake: Fake,
    procs: Processes,
    tasks: int,
    high: float,
    interval: float,
    sample: int,
    worker_pid: int,
    api_pid: int,
) -> _Drive:
    before = await fake.stats()
    cpu0, api0, fake0 = cpu_seconds(worker_pid), cpu_seconds(api_pid), fake.cpu()
    started = time.perf_counter()
    ids = await create_all(base_url, key, tasks, 32)
    create_seconds = time.perf_counter() - started

    async def all_upstream() -> bool:
        procs.check()
        return int((await fake.stats())["creates"]) - int(before["creates"]) >= tasks

    await until(all_upstream, timeout=120 + tasks / 20, what="every task at the fake", every=0.2)
    print(
        f"bench: {tasks:,} tasks created through the API in {create_seconds:.1f} s, all at "
        f"the fake after {time.perf_counter() - started:.1f} s",
        file=sys.stderr,
        flush=True,
    )
    # A sample of the tasks still running, watched as a client would.
    upstream = await fake.tasks()
    number = {prompt(n): n for n in range(tasks)}
    soon = time.time() + 0.5
    running = sorted(
        (t for t in upstream.values() if t.ended > soon and t.prompt in number),
        key=lambda t: t.id,
    )
    chosen = random.Random(SEED).sample(running, min(sample, len(running)))
    headers = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(base_url=base_url, headers=headers, timeout=30) as client:
        watchers = [
            asyncio.create_task(watch_as_client(client, ids[number[t.prompt]], t.ended))
            for t in chosen
        ]
        try:
            timeout = high + 6 * interval + create_seconds + 180
            await wait_done(url, tasks, procs, timeout)
            seconds = time.perf_counter() - started
            cpu, api_cpu = cpu_seconds(worker_pid) - cpu0, cpu_seconds(api_pid) - api0
            fake_cpu, after = fake.cpu() - fake0, await fake.stats()
            client_delays = await asyncio.wait_for(asyncio.gather(*watchers), 30)
        finally:
            for watcher in watchers:
                watcher.cancel()
    return _Drive(
        upstream=await fake.tasks(),
        gets=int(after["gets"]) - int(before["gets"]),
        cpu=cpu,
        api_cpu=api_cpu,
        fake_cpu=fake_cpu,
        fake_requests=requests_served(after) - requests_served(before),
        seconds=seconds,
        create_seconds=create_seconds,
        client=list(client_delays),
    )


def _reelgate_result(
    run: _Drive, times: dict[str, tuple[float, float]], writes: dict[str, int], interval: float
) -> ReelgateRun:
    missing = set(run.upstream) - set(times)
    if missing:
        raise RuntimeError(f"{len(missing)} upstream tasks have no REHOSTING event or no SUCCESS")
    order = sorted(run.upstream.values(), key=lambda t: t.created)
    polled = Polled(
        interval=interval,
        gets=run.gets,
        created=[t.created for t in order],
        ended=[t.ended for t in order],
        seen=[times[t.id][0] for t in order],
        cpu=run.cpu,
        fake_cpu=run.fake_cpu,
        fake_requests=run.fake_requests,
        seconds=run.seconds,
    )
    first = order[0].created
    return ReelgateRun(
        polled=polled,
        done=[times[t.id][1] for t in order],
        client=run.client,
        writes=writes,
        create_seconds=run.create_seconds,
        api_cpu=run.api_cpu,
        offsets=[t.created - first for t in order],
    )


# the naive baseline -------------------------------------------------------------------


async def naive_poll(fake_url: str, offsets: Sequence[float], interval: float) -> dict[str, float]:
    """One coroutine per task: create it at ``offsets[k]`` s from now, then sleep the
    interval and GET until it succeeded. Upstream id -> when its GET saw it succeeded."""
    seen: dict[str, float] = {}
    headers = {"Authorization": f"Bearer {FAKE_KEY}"}
    path = "/api/v3/contents/generations/tasks"
    async with httpx.AsyncClient(
        base_url=fake_url, headers=headers, limits=LIMITS, timeout=TIMEOUT
    ) as client:
        start = time.perf_counter()

        async def one(n: int, offset: float) -> None:
            await asyncio.sleep(max(0.0, start + offset - time.perf_counter()))
            body = {
                "model": MODEL,
                "content": [{"type": "text", "text": prompt(n)}],
                "duration": 4,
                "ratio": "16:9",
                "resolution": "720p",
            }
            response = await client.post(path, json=body)
            response.raise_for_status()
            task_id = response.json()["id"]
            while True:
                await asyncio.sleep(interval)
                response = await client.get(f"{path}/{task_id}")
                response.raise_for_status()
                if response.json()["status"] == "succeeded":
                    seen[task_id] = time.time()
                    return

        await asyncio.gather(*(one(n, offset) for n, offset in enumerate(offsets)))
    return seen


def run_naive(offsets: Sequence[float], low: float, high: float, interval: float) -> Polled:
    """The naive poller in this process against a fresh fake; its CPU is this process's."""
    with tempfile.TemporaryDirectory(prefix="rg-bench-naive-") as tmp, running_fake(
        Path(tmp), low, high
    ) as fake:
        before = asyncio.run(fake.stats())
        cpu0, fake0 = cpu_seconds(os.getpid()), fake.cpu()
        started = time.perf_counter()
        seen = asyncio.run(naive_poll(fake.url, offsets, interval))
        seconds = time.perf_counter() - started
        cpu, fake_cpu = cpu_seconds(os.getpid()) - cpu0, fake.cpu() - fake0
        after = asyncio.run(fake.stats())
        upstream = asyncio.run(fake.tasks())
    order = sorted(upstream.values(), key=lambda t: t.created)
    return Polled(
        interval=interval,
        gets=int(after["gets"]) - int(before["gets"]),
        created=[t.created for t in order],
        ended=[t.ended for t in order],
        seen=[seen[t.id] for t in order],
        cpu=cpu,
        fake_cpu=fake_cpu,
        fake_requests=requests_served(after) - requests_served(before),
        seconds=seconds,
    )


# rows -----------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """This benchmark's own options."""
    parser.add_argument(
        "--tasks", type=int, default=None, help=f"tasks in flight [{TASKS:,}, quick {QUICK_TASKS}]"
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
        help=f"shortest run at the fake [{RUN_SECONDS[0]:g}, quick {QUICK_RUN_SECONDS[0]:g}]",
    )
    parser.add_argument(
        "--max-seconds",
        type=float,
        default=None,
        help=f"longest run at the fake [{RUN_SECONDS[1]:g}, quick {QUICK_RUN_SECONDS[1]:g}]",
    )
    parser.add_argument("--concurrency", type=int, default=200, help="[watch] concurrency [200]")
    parser.add_argument("--batch", type=int, default=1000, help="[watch] batch [1000]")
    parser.add_argument(
        "--sample",
        type=int,
        default=None,
        help=f"tasks watched by a polling client [{SAMPLE}, quick {QUICK_SAMPLE}]",
    )
    parser.add_argument("--admin-url", default=PG_ADMIN_URL, help="PostgreSQL URL to create DBs")


@dataclass(frozen=True)
class Plan:
    """The sizes of the runs the options ask for."""

    tasks: int
    low: float
    high: float
    interval: float
    sample: int

    @property
    def short(self) -> Plan:
        return Plan(max(self.tasks // FEWER, 1), self.low / SHORTER, self.high / SHORTER,
                    self.interval, 0)  # fmt: skip


def plan(args: argparse.Namespace) -> Plan:
    quick = args.quick
    low, high = QUICK_RUN_SECONDS if quick else RUN_SECONDS
    return Plan(
        tasks=args.tasks or (QUICK_TASKS if quick else TASKS),
        low=args.min_seconds if args.min_seconds is not None else low,
        high=args.max_seconds if args.max_seconds is not None else high,
        interval=args.interval or (QUICK_INTERVAL if quick else INTERVAL),
        sample=args.sample if args.sample is not None else (QUICK_SAMPLE if quick else SAMPLE),
    )


NUMBERS = ("9 gets", "9 delay", "9 writes", "9 cpu")


def measure(args: argparse.Namespace) -> list[Row]:
    """The main reelgate run and the naive poller's, then the short runs of both."""
    p = plan(args)
    try:
        main = asyncio.run(
            run_reelgate(args, tasks=p.tasks, low=p.low, high=p.high, interval=p.interval,
                         sample=p.sample, label="main")
        )  # fmt: skip
        print(f"bench: reelgate main run in {main.polled.seconds:.0f} s", file=sys.stderr)
        naive = run_naive(main.offsets, p.low, p.high, p.interval)
        print(f"bench: naive main run in {naive.seconds:.0f} s", file=sys.stderr)
        s = p.short
        short = asyncio.run(
            run_reelgate(args, tasks=s.tasks, low=s.low, high=s.high, interval=s.interval,
                         sample=0, label="short")
        )  # fmt: skip
        naive_short = run_naive(short.offsets, s.low, s.high, s.interval)
        print(f"bench: short runs in {short.polled.seconds:.0f} s, "
              f"{naive_short.seconds:.0f} s", file=sys.stderr)  # fmt: skip
    except (RuntimeError, OSError, psycopg.Error, httpx.HTTPError) as exc:
        message = " ".join(str(exc).split())[-600:]
        reason = f"{type(exc).__name__}: {message}"
        return [failed_row(number, _PATHS[number], _TARGETS[number], reason) for number in NUMBERS]
    return rows(p, main, naive, short, naive_short)


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


def rows(p: Plan, main: ReelgateRun, naive: Polled, short: ReelgateRun, naive_short: Polled
         ) -> list[Row]:  # fmt: skip
    """The four rows of #9."""
    m = main.polled
    scale = (
        f"{m.tasks:,} tasks at a fake Ark ending after {p.low:g}–{p.high:g} s, "
        f"poll interval {p.interval:g} s"
    )
    return [
        _gets_row(scale, m, naive),
        _delay_row(scale, main, naive),
        _writes_row(p, main, short),
        _cpu_row(scale, main, naive, short, naive_short),
    ]


def _gets_row(scale: str, m: Polled, naive: Polled) -> Row:
    figure, base = m.gets_per_interval, naive.gets_per_interval
    notes = (
        f"{scale}: {m.gets:,} task GETs at the fake over {m.watched / 60:,.0f} task-minutes "
        f"watched (create at the fake → the poll that saw it succeeded) = {figure:.3f} GETs "
        f"per task per interval; the naive poller (one coroutine per task, same fake, same "
        f"arrivals and run times) {naive.gets:,} GETs, {base:.3f}. Over the upstream run "
        f"time instead (create → end at the fake): reelgate {m.gets_per_run_interval:.3f}, "
        f"naive {naive.gets_per_run_interval:.3f}, where a perfect poller scores "
        f"{m.floor:.3f} (Σ ceil(run/interval) / Σ run/interval: the last interval waits "
        f"for an end inside it). The fake's own cost: {m.fake_cost * 1000:.2f} ms CPU per "
        f"request ({m.fake_requests:,} requests, {m.fake_cpu:.1f} s) in the reelgate run, "
        f"{naive.fake_cost * 1000:.2f} ms in the naive one."
    )
    values = {
        "gets": m.gets,
        "gets_per_interval": figure,
        "naive_gets": naive.gets,
        "naive_gets_per_interval": base,
        "gets_per_run_interval": m.gets_per_run_interval,
        "naive_gets_per_run_interval": naive.gets_per_run_interval,
        "floor": m.floor,
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


def _delay_row(scale: str, main: ReelgateRun, naive: Polled) -> Row:
    m = main.polled
    delay, detect, rehost = main.delay, m.detection, main.rehost
    d50, d95 = statistics.median(delay), quantile(delay, 0.95)
    n50, n95 = statistics.median(naive.detection), quantile(naive.detection, 0.95)
    r50 = statistics.median(rehost)
    allowed = m.interval + r50
    client = main.client
    seen = (
        f"median {statistics.median(client):.2f} s, p95 {quantile(client, 0.95):.2f} s "
        f"({len(client)} tasks sampled, polled every {CLIENT_POLL:g} s)"
        if client
        else "no task sampled"
    )
    notes = (
        f"{scale}: upstream end (the fake's clock) → SUCCESS committed (``completed_at``), "
        f"all tasks: median {d50:.2f} s, p95 {d95:.2f} s, max {max(delay):.2f} s; of which "
        f"end → the poll that saw it (REHOSTING) median {statistics.median(detect):.2f} s, "
        f"p95 {quantile(detect, 0.95):.2f} s, and re-host (REHOSTING → SUCCESS) median "
        f"{r50:.2f} s, p95 {quantile(rehost, 0.95):.2f} s, max {max(rehost):.2f} s. As a "
        f"client saw it through the API: {seen}. The naive poller (no re-host): end → its "
        f"GET saw it, median {n50:.2f} s, p95 {n95:.2f} s."
    )
    values = {
        "median_s": d50,
        "p95_s": d95,
        "detect_median_s": statistics.median(detect),
        "rehost_median_s": r50,
        "rehost_p95_s": quantile(rehost, 0.95),
        "naive_median_s": n50,
        "naive_p95_s": n95,
        "interval_s": m.interval,
    }
    if client:
        values["client_median_s"] = statistics.median(client)
    return Row(
        "9 delay",
        _PATHS["9 delay"],
        f"median {d50:.2f} s, p95 {d95:.2f} s",
        f"median {n50:.2f} s, p95 {n95:.2f} s (naive, no re-host)",
        d50 / n50 if n50 > 0 else None,
        f"median ≤ {m.interval:g} s + re-host {r50:.2f} s",
        d50 <= allowed,
        notes,
        values,
    )


def _writes_row(p: Plan, main: ReelgateRun, short: ReelgateRun) -> Row:
    s = p.short
    long_w, short_w = main.writes_per_task, short.writes_per_task
    ratio = long_w / short_w
    m, sp = main.polled, short.polled

    def detail(run: ReelgateRun) -> str:
        tasks = run.polled.tasks
        parts = ", ".join(f"{name} {run.writes.get(name, 0) / tasks:.2f}" for name in TASK_TABLES)
        return f"{parts}; pollers {run.writes.get('pollers', 0)} in all"

    notes = (
        f"Rows inserted + updated + deleted (pg_stat_user_tables) per task, over the tasks: "
        f"{m.tasks:,} tasks of {p.low:g}–{p.high:g} s ({m.gets / m.tasks:.1f} GETs each): "
        f"{long_w:.2f} ({detail(main)}); {sp.tasks:,} tasks of {s.low:g}–{s.high:g} s "
        f"({sp.gets / sp.tasks:.1f} GETs each): {short_w:.2f} ({detail(short)}). Same "
        f"interval ({p.interval:g} s), one API and one worker process each, fresh databases."
    )
    values = {
        "writes_per_task": long_w,
        "short_writes_per_task": short_w,
        "gets_per_task": m.gets / m.tasks,
        "short_gets_per_task": sp.gets / sp.tasks,
    }
    return Row(
        "9 writes",
        _PATHS["9 writes"],
        f"{long_w:.2f} per task ({p.low:g}–{p.high:g} s)",
        f"{short_w:.2f} per task ({s.low:g}–{s.high:g} s)",
        ratio,
        _TARGETS["9 writes"],
        abs(ratio - 1) <= WRITES_TOLERANCE,
        notes,
        values,
    )


def per_get(long: Polled, short: Polled) -> float | None:
    """CPU seconds per GET: the difference in CPU per task over the difference in GETs per
    task between a run of long tasks and one of short tasks (None when they poll alike)."""
    gets = long.gets / long.tasks - short.gets / short.tasks
    if gets <= 0.5:
        return None
    return (long.cpu / long.tasks - short.cpu / short.tasks) / gets


def _cpu_row(
    scale: str, main: ReelgateRun, naive: Polled, short: ReelgateRun, naive_short: Polled
) -> Row:
    m = main.polled
    figure, base = m.cpu_per_1000, naive.cpu_per_1000
    ours, theirs = per_get(m, short.polled), per_get(naive, naive_short)
    marginal = "could not be separated (the short runs polled as often)"
    if ours is not None and theirs is not None:
        marginal = (
            f"{ours * 1e6:,.0f} µs per GET for reelgate's worker and {theirs * 1e6:,.0f} µs "
            f"for the naive poller (ratio {ours / theirs:.2f}), i.e. "
            f"{ours * 1000:.2f} s and {theirs * 1000:.2f} s of CPU per 1,000 tasks per poll "
            f"interval"
        )
    notes = (
        f"{scale}: the worker process (user + system, /proc) from the first create to the "
        f"last SUCCESS: {m.cpu:.1f} s = {figure:.2f} s per 1,000 tasks, "
        f"{m.core_share_per_1000:.1%} of a core per 1,000 tasks in flight, over "
        f"{m.seconds:.0f} s; it submits (claim, POST, record), polls and re-hosts (download, "
        f"probe, store). The naive poller (creates and polls, in this process): "
        f"{naive.cpu:.1f} s = {base:.2f} s per 1,000 tasks, "
        f"{naive.core_share_per_1000:.1%} of a core per 1,000 tasks in flight. The cost of "
        f"a poll alone, from the difference with the short runs ({short.polled.tasks:,} "
        f"tasks each, fewer GETs per task): {marginal}. The API process used "
        f"{main.api_cpu:.1f} s (creates, {main.create_seconds:.0f} s, and the sampled "
        f"client's GETs)."
    )
    values = {
        "cpu_s": m.cpu,
        "cpu_per_1000_s": figure,
        "core_share_per_1000": m.core_share_per_1000,
        "naive_cpu_s": naive.cpu,
        "naive_cpu_per_1000_s": base,
        "naive_core_share_per_1000": naive.core_share_per_1000,
        "api_cpu_s": main.api_cpu,
        "seconds": m.seconds,
    }
    if ours is not None and theirs is not None:
        values["cpu_per_get_s"], values["naive_cpu_per_get_s"] = ours, theirs
    return Row(
        "9 cpu",
        _PATHS["9 cpu"],
        f"{figure:.2f} s per 1,000 tasks ({m.core_share_per_1000:.1%} of a core "
        f"per 1,000 in flight)",
        f"{base:.2f} s ({naive.core_share_per_1000:.1%}; naive poller)",
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
