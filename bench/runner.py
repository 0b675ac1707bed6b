"""``bench/run``: every benchmark, one after the other, into ``bench/RESULTS.md``.

Each benchmark runs as its own process (``python -m bench.<module> --json …``), so
that one that fails or pins itself to a core touches no other; its rows are gathered
into one table with the date, the machine and the command. The shared options
(``--quick``, ``--seconds``, ``--rounds``, ``--connections``, ``--loadgen``,
``--profile``) pass through to every benchmark. Exits 1 when a benchmark could not
run to the end (a missed target is a result, not an error).

Every run also writes ``results.json`` next to the report (``bench/results.json``: the
rows, and when and how each benchmark was run). ``--merge`` keeps the rows of the
benchmarks not chosen from it, so that ``bench/run --only upstream --merge`` refreshes
one benchmark's rows in ``RESULTS.md`` and says in it when each benchmark ran.
"""

from __future__ import annotations

import argparse
import datetime
import json
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

from bench import load, options
from bench.report import (
    Row,
    failed_row,
    load_average,
    machine,
    read_rows,
    render_markdown,
    write_rows,
)
from bench.servers import postgres_version

ROOT = Path(__file__).resolve().parent.parent
# module, the rows it writes (for a failure), what it measures
BENCHMARKS = {
    "retrieve": ("1, 2", "retrieve, idle and while rendering"),
    "create": ("3", "multipart creates"),
    "dispatch": ("4", "dispatch latency"),
    "throughput": ("5", "end-to-end tasks/s"),
    "render": ("6", "the preview renderer"),
    "memory": ("7", "server RSS"),
    "scaleout": ("8", "end-to-end tasks/s with 1, 2 and 4 worker processes"),
    "upstream": ("9", "upstream polling at scale vs a naive poller"),
    "readpath": ("10", "the read path vs a bare ASGI app, 1 and 2 API processes"),
    "listing": ("11", "listing with 1,000,000 tasks, first and deep pages vs retrieve"),
    "events": ("12", "1,000 open SSE streams: memory per stream, delay vs polling"),
    "webhooks": ("13", "webhook deliveries/s from the outbox vs a plain httpx loop"),
    "operator": ("14", "status reads with metrics and key limits on vs off"),
    "gpu": ("15", "the GPU worker (diffusers) vs a plain diffusers script (needs CUDA)"),
    "dashboard": ("16", "dashboard page weight: bytes and requests per page"),
}
MODULE_TIMEOUT = 600
TIMEOUTS = {"upstream": 1200}  # 10,000 tasks of up to 2 minutes, twice: about 9 minutes


def main() -> None:
    """Run the benchmarks the options choose and write the results."""
    parser = options.parser(__doc__, prog="bench/run", rows=False)
    parser.add_argument(
        "--only", default=",".join(BENCHMARKS), help="comma-separated modules to run [all]"
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=ROOT / "bench" / "RESULTS.md",
        help="where to write the report [bench/RESULTS.md]",
    )
    parser.add_argument(
        "--merge",
        action="store_true",
        help="keep the other benchmarks' rows from bench/results.json (their last run)",
    )
    args = parser.parse_args()
    chosen = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = set(chosen) - set(BENCHMARKS)
    if unknown:
        parser.error(f"unknown benchmarks: {', '.join(sorted(unknown))}")
    tool = load.pick_tool(args.loadgen, quick=args.quick)  # install wrk once, here
    started = time.perf_counter()
    date = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    info = machine()
    try:
        info["postgresql"] = postgres_version()
    except Exception as exc:  # only a line of the report
        info["postgresql"] = f"not reachable ({type(exc).__name__})"
    info["scratch folder"] = tempfile.gettempdir()
    rows: list[Row] = []
    crashed = []
    with tempfile.TemporaryDirectory(prefix="reelgate-bench-run-") as folder:
        for name in chosen:
            result = Path(folder) / f"{name}.json"
            print(f"bench: {name} ({BENCHMARKS[name][1]})", file=sys.stderr, flush=True)
            child = [sys.executable, "-m", f"bench.{name}", "--json", str(result)]
            child += ["--loadgen", tool, *_passed_on(args)]
            timeout = TIMEOUTS.get(name, MODULE_TIMEOUT)
            try:
                done = subprocess.run(child, cwd=ROOT, timeout=timeout, check=False)
                failure = None if done.returncode == 0 else f"exit status {done.returncode}"
            except subprocess.TimeoutExpired:
                failure = f"no result in {timeout} s"
            if failure is None and result.is_file():
                rows += read_rows(result)
            else:
                crashed.append(name)
                number, what = BENCHMARKS[name]
                reason = f"`python -m bench.{name}` failed ({failure}); see its output above"
                rows.append(failed_row(number, what, "—", reason))
    seconds = time.perf_counter() - started
    info["load average at end"] = load_average()
    command = " ".join(["bench/run", *sys.argv[1:]])
    runs = dict.fromkeys(chosen, f"{date}, `{command}`")
    record = args.output.with_name("results.json")
    if args.merge:
        rows, runs = _merged(record, rows, runs)
    if set(runs) != set(chosen):
        info["benchmarks run"] = "; ".join(f"{name} {when}" for name, when in runs.items())
    args.output.write_text(
        render_markdown(rows, date=date, command=command, machine_info=info, seconds=seconds)
    )
    record.write_text(
        json.dumps({"runs": runs, "rows": [asdict(row) for row in rows]}, indent=1) + "\n"
    )
    out = ROOT / "bench" / "out"
    out.mkdir(exist_ok=True)
    write_rows(out / "results.json", rows)
    print(f"bench: wrote {args.output} in {seconds:.0f} s", file=sys.stderr)
    if crashed:
        print(f"bench: failed to run: {', '.join(crashed)}", file=sys.stderr)
        sys.exit(1)


def _merged(path: Path, rows: list[Row], runs: dict[str, str]) -> tuple[list[Row], dict[str, str]]:
    """``rows`` and ``runs`` with the other benchmarks' from the record at ``path``."""
    if not path.is_file():
        print(f"bench: --merge: no {path} yet, nothing kept", file=sys.stderr)
        return rows, runs
    record = json.loads(path.read_text())
    kept = {name: when for name, when in record["runs"].items() if name not in runs}
    old = [Row(**item) for item in record["rows"] if _module(item["number"]) in kept]
    order = list(BENCHMARKS)
    everything = sorted([*old, *rows], key=lambda row: order.index(_module(row.number)))
    merged = {name: ({**kept, **runs})[name] for name in order if name in {**kept, **runs}}
    return everything, merged


def _module(number: str) -> str:
    """The benchmark module that writes the row numbered ``number`` (e.g. "9 gets")."""
    first = number.split()[0]
    return next(name for name, (numbers, _) in BENCHMARKS.items() if first in numbers.split(", "))


def _passed_on(args: argparse.Namespace) -> list[str]:
    """The shared options given to ``bench/run``, for each benchmark."""
    passed = ["--connections", str(args.connections)]
    if args.quick:
        passed.append("--quick")
    if args.seconds is not None:
        passed += ["--seconds", str(args.seconds)]
    if args.rounds is not None:
        passed += ["--rounds", str(args.rounds)]
    if args.profile is not None:
        passed += ["--profile", str(args.profile.resolve())]
    return passed


if __name__ == "__main__":
    main()
