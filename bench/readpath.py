"""#10: the read path against a bare ASGI app, with 1 and 2 API processes.

Five loads in turn, each for the same time, in the same run on the same machine:

- ``bare 1p``: the ceiling, ``bench.bare`` in one process: the bytes of a retrieve's
  answer, fixed, with no routing, middleware, auth or store, under reelgate's own
  uvicorn settings (``reelgate.api.server``);
- ``route 1p``: ``GET /bench/videos/{id}`` on ``reelgate serve``, the in-app baseline
  route of #1 (FastAPI's stack answering the same JSON without auth or store);
- ``retrieve 1p``: ``GET /v1/videos/{id}`` with a valid key, ids at random over
  10,000 stored SUCCESS tasks (SQLite), on ``reelgate serve`` (one API process);
- ``retrieve 2p``: the same on ``reelgate serve --api-processes 2``;
- ``bare 2p``: the ceiling in two processes (what the machine allows at most).

Every load sends the same request bytes (the same paths and key to the bare app,
which ignores them). Rows: ``10 1p``, retrieve over the bare ceiling (target ≥ 0.3);
``10 2p``, two API processes over one (reported: it depends on the cores left once
wrk has one); ``10 route``, the FastAPI route over the bare ceiling (reported).

``--before DIR`` adds a sixth load, ``before 1p``: the same retrieve on a server run
from another source tree (``DIR/src``, e.g. ``git archive <commit> src | tar -x -C
DIR``), for a before/after figure in one run (row ``10 before``).

Run alone: ``python -m bench.readpath [--quick] [--seconds N] [--before DIR]``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx

from bench import options
from bench.bare import running_bare
from bench.load import Load, LoadGenerator, LoadResult, fastest
from bench.report import Row
from bench.seed import seed_sqlite
from bench.servers import Server, create_key, running_server

TASKS, QUICK_TASKS = 10_000, 300
TARGET = "≥ 0.3x bare ASGI req/s"


@dataclass(frozen=True)
class Case:
    """One load against one server."""

    server: str
    load: Load


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """This benchmark's own options."""
    parser.add_argument("--tasks", type=int, default=None, help=f"tasks stored [{TASKS:,}]")
    parser.add_argument(
        "--before",
        type=Path,
        default=None,
        help="a folder holding another source tree (DIR/src): its retrieve, for comparison",
    )
    parser.add_argument(
        "--before-label",
        default=None,
        help="how the report names the --before code (default: its folder)",
    )


def measure(args: argparse.Namespace) -> list[Row]:
    """Seed, start the four servers, alternate the five loads, compare."""
    count = args.tasks or (QUICK_TASKS if args.quick else TASKS)
    seconds, rounds = options.seconds(args), options.rounds(args)
    with options.workdir() as work, contextlib.ExitStack() as stack:
        data = work / "one" / "data"
        ids = seed_sqlite(data / "reelgate.db", count)
        key = create_key(data)
        two = work / "two" / "data"
        two.mkdir(parents=True)
        shutil.copy(data / "reelgate.db", two / "reelgate.db")  # the same tasks and key
        generator = options.load_generator(args, work)
        auth = {"Authorization": f"Bearer {key}"}
        retrieve = Load("GET", [f"/v1/videos/{i}" for i in ids], auth)
        route = Load("GET", [f"/bench/videos/{i}" for i in ids])
        servers: dict[str, Server] = {}
        servers["reelgate 1p"] = stack.enter_context(running_server(data))
        servers["reelgate 2p"] = stack.enter_context(
            running_server(two, {"REELGATE_API_PROCESSES": "2"})
        )
        if args.before is not None:
            old = work / "before" / "data"
            old.mkdir(parents=True)
            shutil.copy(data / "reelgate.db", old / "reelgate.db")
            source = {"PYTHONPATH": str((args.before / "src").resolve())}
            servers["before 1p"] = stack.enter_context(running_server(old, source))
        body = _retrieve_body(servers["reelgate 1p"].url, ids[0], auth)
        servers["bare 1p"] = stack.enter_context(running_bare(work / "bare1", body))
        servers["bare 2p"] = stack.enter_context(running_bare(work / "bare2", body, processes=2))
        cases = {
            "bare 1p": Case("bare 1p", retrieve),
            "route 1p": Case("reelgate 1p", route),
            "retrieve 1p": Case("reelgate 1p", retrieve),
            "retrieve 2p": Case("reelgate 2p", retrieve),
            "bare 2p": Case("bare 2p", retrieve),
        }
        if args.before is not None:
            cases["before 1p"] = Case("before 1p", retrieve)
        urls = {name: server.url for name, server in servers.items()}
        pids = {name: server.pid for name, server in servers.items()}
        if not args.quick:
            for case in cases.values():
                generator.run(urls[case.server], case.load, 1).check("warm-up")
        with options.profiled(args, servers["reelgate 1p"].pid, "readpath-retrieve"):
            runs, cpu = _alternate(generator, urls, pids, cases, seconds, rounds)
    best = {name: fastest(results) for name, results in runs.items()}
    label = args.before_label or (None if args.before is None else f"`{args.before}`")
    rows = _rows(best, count, generator, seconds, rounds, len(body), label)
    if all(cpu.values()):  # where /proc tells: the server's CPU time per request
        per = {name: min(values) for name, values in cpu.items()}
        text = ", ".join(f"{name} {value:.0f} µs" for name, value in per.items())
        rows[0].notes += (
            f" Server CPU per request (all its processes, lowest of the runs): {text}; "
            f"bare over retrieve {per['bare 1p'] / per['retrieve 1p']:.2f}."
        )
        rows[0].values |= {f"cpu_us {name}": value for name, value in per.items()}
    return rows


def _alternate(
    generator: LoadGenerator,
    urls: Mapping[str, str],
    pids: Mapping[str, int],
    cases: Mapping[str, Case],
    seconds: int,
    rounds: int,
) -> tuple[dict[str, list[LoadResult]], dict[str, list[float]]]:
    """Each case once per round, in turn, every run checked for errors.

    Also the server's CPU time per request of each run, in microseconds (none where
    ``/proc`` cannot tell): less sensitive than req/s to other loads on the machine.
    """
    results: dict[str, list[LoadResult]] = {name: [] for name in cases}
    cpu: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(rounds):
        for name, case in cases.items():
            before = _cpu_seconds(pids[case.server])
            run = generator.run(urls[case.server], case.load, seconds).check(name)
            after = _cpu_seconds(pids[case.server])
            results[name].append(run)
            if before is not None and after is not None and run.requests:
                cpu[name].append((after - before) / run.requests * 1e6)
    return results, cpu


def _cpu_seconds(pid: int) -> float | None:
    """User and system CPU time of ``pid`` and its children so far (Linux), else None."""
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        ticks = 0
        for each in [pid, *map(int, children)]:
            fields = Path(f"/proc/{each}/stat").read_text().rsplit(")", 1)[1].split()
            ticks += int(fields[11]) + int(fields[12])  # utime, stime
    except (OSError, ValueError, IndexError):
        return None
    return ticks / os.sysconf("SC_CLK_TCK")


def _rows(
    best: Mapping[str, LoadResult],
    count: int,
    generator: LoadGenerator,
    seconds: int,
    rounds: int,
    body_bytes: int,
    before: str | None,
) -> list[Row]:
    bare1, bare2 = best["bare 1p"], best["bare 2p"]
    one, two, route = best["retrieve 1p"], best["retrieve 2p"], best["route 1p"]
    how = (
        f"{count:,} SUCCESS tasks in SQLite, ids at random; {generator.tool} with "
        f"{generator.connections} connections, {rounds} x {seconds} s of each load in turn, "
        f"best of each; answers of {body_bytes} B."
    )
    every = "; ".join(f"{name} {result.summary()}" for name, result in best.items())
    rows = [
        Row(
            "10 1p",
            "`GET /v1/videos/{id}`, 1 API process, vs a bare ASGI app",
            f"{one.rps:,.0f} req/s, p99 {one.p99_ms:.1f} ms",
            f"{bare1.rps:,.0f} req/s (bare ASGI)",
            one.rps / bare1.rps,
            TARGET,
            one.rps / bare1.rps >= 0.3,
            f"{how} {every}.",
            {"rps": one.rps, "bare_rps": bare1.rps, "p99_ms": one.p99_ms},
        ),
        Row(
            "10 2p",
            "`GET /v1/videos/{id}`, 2 API processes (`--api-processes 2`)",
            f"{two.rps:,.0f} req/s, p99 {two.p99_ms:.1f} ms",
            f"{one.rps:,.0f} req/s (1 process)",
            two.rps / one.rps,
            "reported (how reads grow with processes)",
            None,
            f"Two API processes reach {two.rps / bare2.rps:.2f} of the bare app in two "
            f"processes ({bare2.rps:,.0f} req/s; in one, {bare1.rps:,.0f}). The load "
            f"generator runs on the same machine and takes a core of its own.",
            {"rps": two.rps, "one_rps": one.rps, "bare2_rps": bare2.rps},
        ),
        Row(
            "10 route",
            "`GET /bench/videos/{id}` (FastAPI route, no auth or store) vs bare ASGI",
            f"{route.rps:,.0f} req/s, p99 {route.p99_ms:.1f} ms",
            f"{bare1.rps:,.0f} req/s (bare ASGI)",
            route.rps / bare1.rps,
            "reported (FastAPI's own cost)",
            None,
            "#1's in-app baseline route: routing, dependency injection and middleware, "
            "with the same JSON; the retrieve route no longer goes through this stack.",
            {"rps": route.rps, "bare_rps": bare1.rps},
        ),
    ]
    if before is not None:
        old = best["before 1p"]
        rows.append(
            Row(
                "10 before",
                f"`GET /v1/videos/{{id}}`, 1 API process, {before}",
                f"{old.rps:,.0f} req/s, p99 {old.p99_ms:.1f} ms",
                f"{bare1.rps:,.0f} req/s (bare ASGI)",
                old.rps / bare1.rps,
                "reported (before the change)",
                None,
                f"The same load on a server run from other code ({before}), in the same "
                f"run: today's retrieve answers {one.rps / old.rps:.1f}x as many requests.",
                {"rps": old.rps, "bare_rps": bare1.rps},
            )
        )
    return rows


def _retrieve_body(base_url: str, task_id: str, auth: Mapping[str, str]) -> bytes:
    response = httpx.get(f"{base_url}/v1/videos/{task_id}", headers=auth, timeout=10)
    if response.status_code != 200:
        raise RuntimeError(f"retrieve answered {response.status_code}: {response.text}")
    return response.content


def main() -> None:
    """Run #10 and report it."""
    started = time.perf_counter()
    options.main(__doc__, measure, add_arguments)
    print(f"bench: readpath took {time.perf_counter() - started:.0f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
