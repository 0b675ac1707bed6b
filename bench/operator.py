"""#14: what the operator surface costs the status read: metrics and key limits on vs off.

Two ``reelgate serve`` processes (API only) on one data folder of 10,000 stored SUCCESS
tasks (SQLite), measured in turn in the same run:

- ``off``: ``REELGATE_METRICS=false`` (no per-request counting, no ``/metrics``), read
  with a key that has no limits;
- ``on``: metrics on (the default: multiprocess mode, every request counted by route
  and status and timed into a histogram, ``/metrics`` behind a token), read with a key
  that has every per-key limit set (create rate, active tasks, seconds per day), and a
  global queue cap set (``REELGATE_MAX_QUEUED``).

Both answer ``GET /v1/videos/{id}`` with ids at random. Limits apply to creates; on a
status read they can only cost through the key lookup, which this measures. Row
``14``: ``on`` req/s over ``off`` req/s, best run of each (target ≥ 0.9: at most 10 %
overhead); the p99 of both is reported. After the runs, the ``on`` server's
``/metrics`` must have counted the reads (a check that the figure measured the
instrumented path).

Run alone: ``python -m bench.operator [--quick] [--seconds N]``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from bench import options
from bench.load import Load, LoadGenerator, LoadResult, fastest
from bench.report import Row
from bench.seed import seed_sqlite
from bench.servers import OWNER, create_key, running_server, server_env

TASKS, QUICK_TASKS = 10_000, 300
PATH = "status read, metrics + key limits on vs off"
TARGET = "≥ 0.9x off req/s"
TOKEN = "bench-metrics-token"
LIMITS = ["--rate-per-minute", "100000", "--max-active", "100000", "--seconds-per-day", "10000000"]
RETRIEVE_ROUTE = "/v1/videos/{task_id}"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """This benchmark's own options."""
    parser.add_argument("--tasks", type=int, default=None, help=f"tasks stored [{TASKS:,}]")


def measure(args: argparse.Namespace) -> list[Row]:
    """Seed, start both servers, alternate the two loads, compare the best runs."""
    count = args.tasks or (QUICK_TASKS if args.quick else TASKS)
    seconds, rounds = options.seconds(args), options.rounds(args)
    with options.workdir() as work:
        data = work / "data"
        ids = seed_sqlite(data / "reelgate.db", count)
        plain = create_key(data)
        limited, limits_note = _limited_key(data)
        generator = options.load_generator(args, work)
        paths = [f"/v1/videos/{i}" for i in ids]
        off_load = Load("GET", paths, {"Authorization": f"Bearer {plain}"})
        on_load = Load("GET", paths, {"Authorization": f"Bearer {limited}"})
        off_env = {"REELGATE_WORKERS": "0", "REELGATE_METRICS": "false"}
        on_env = {
            "REELGATE_WORKERS": "0",
            "REELGATE_METRICS_TOKEN": TOKEN,
            "REELGATE_MAX_QUEUED": "100000",
        }
        with running_server(data, off_env) as off, running_server(data, on_env) as on:
            options.warm_up(args, generator, off.url, {"off": off_load})
            options.warm_up(args, generator, on.url, {"on": on_load})
            cases = {
                "off": (off.url, off_load),
                "metrics": (on.url, off_load),
                "on": (on.url, on_load),
            }
            runs = _alternate(generator, cases, seconds, rounds)
            counted = _counted_reads(on.url)
    best_on, best_off = fastest(runs["on"]), fastest(runs["off"])
    metered = fastest(runs["metrics"])
    made = sum(result.requests for result in runs["on"] + runs["metrics"])
    ratio = best_on.rps / best_off.rps
    detail = (
        f"{count:,} SUCCESS tasks in SQLite, ids at random; {generator.tool} with "
        f"{generator.connections} connections, {rounds} x {seconds} s alternating, best of "
        f"each. On {best_on.summary()}; off {best_off.summary()}; metrics on with the "
        f"key without limits {metered.summary()} ({metered.rps / best_off.rps:.2f}x off). "
        f"{limits_note} The on "
        f"server's /metrics counted {counted:,.0f} status reads (the runs sent {made:,}, "
        "plus the warm-up)."
    )
    return [
        Row(
            "14",
            PATH,
            f"{best_on.rps:,.0f} req/s, p99 {best_on.p99_ms:.1f} ms",
            f"{best_off.rps:,.0f} req/s, p99 {best_off.p99_ms:.1f} ms",
            ratio,
            TARGET,
            ratio >= 0.9 and counted >= made,
            detail,
            {
                "rps": best_on.rps,
                "baseline_rps": best_off.rps,
                "p99_ms": best_on.p99_ms,
                "baseline_p99_ms": best_off.p99_ms,
                "metrics_only_rps": metered.rps,
            },
        )
    ]


def _alternate(
    generator: LoadGenerator, cases: dict[str, tuple[str, Load]], seconds: int, rounds: int
) -> dict[str, list[LoadResult]]:
    """Each case once per round, in turn (``load.alternate``, over two servers)."""
    results: dict[str, list[LoadResult]] = {name: [] for name in cases}
    for _ in range(rounds):
        for name, (url, load) in cases.items():
            results[name].append(generator.run(url, load, seconds).check(name))
    return results


def _limited_key(data_dir: Path) -> tuple[str, str]:
    """A key of the same owner with every limit set, and a note saying so (or why not)."""
    command = [sys.executable, "-m", "reelgate", "keys", "create", "--owner", OWNER, *LIMITS]
    command += ["--data-dir", str(data_dir)]
    done = subprocess.run(
        command, env=server_env(data_dir, 0, {}), capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"reelgate keys create with limits failed:\n{done.stderr}")
    limits = " ".join(LIMITS)
    return done.stdout.strip().splitlines()[-1], f"The on key has limits ({limits})."


def _counted_reads(base_url: str) -> float:
    response = httpx.get(
        f"{base_url}/metrics", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30
    )
    response.raise_for_status()
    total = 0.0
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            if (
                sample.name == "reelgate_http_requests_total"
                and sample.labels.get("route") == RETRIEVE_ROUTE
            ):
                total += sample.value
    return total


def main() -> None:
    """Run #14 and report it."""
    options.main(__doc__, measure, add_arguments)


if __name__ == "__main__":
    main()
