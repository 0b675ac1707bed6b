"""The command line every benchmark shares, and how a benchmark hands back its rows."""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

from bench.load import Load, LoadGenerator, pick_tool
from bench.report import Row, print_rows, write_rows

QUICK_SECONDS = 1
FULL_SECONDS = 10


def parser(
    doc: str | None, *, prog: str | None = None, rows: bool = True
) -> argparse.ArgumentParser:
    """A parser with the shared options; a benchmark adds its own knobs.

    ``rows``: offer ``--json`` (a benchmark's rows); the runner writes a report instead.
    """
    if prog is None:
        prog = f"python -m bench.{Path(sys.argv[0]).stem}"
    result = argparse.ArgumentParser(prog=prog, description=(doc or "").split("\n\n", 1)[0])
    result.add_argument(
        "--quick", action="store_true", help="a tiny workload, seconds long (the smoke tests)"
    )
    result.add_argument(
        "--seconds",
        type=int,
        default=None,
        help=f"duration of each load run [default {FULL_SECONDS}, quick {QUICK_SECONDS}]",
    )
    result.add_argument(
        "--rounds",
        type=int,
        default=None,
        help="alternating runs of figure and baseline; the best of each counts "
        "[default 2, quick 1]",
    )
    result.add_argument(
        "--connections", type=int, default=16, help="open connections of the load [16]"
    )
    result.add_argument(
        "--loadgen",
        choices=("auto", "wrk", "python"),
        default="auto",
        help="auto (the default): wrk, installed if missing; in quick mode a missing wrk "
        "means the Python fallback instead",
    )
    if rows:
        result.add_argument("--json", type=Path, default=None, help="write the rows here as JSON")
    result.add_argument(
        "--profile",
        type=Path,
        default=None,
        help="a folder: record each loaded server with py-spy into it (flame graph SVGs)",
    )
    return result


def seconds(args: argparse.Namespace) -> int:
    """The duration of one load run."""
    return int(args.seconds or (QUICK_SECONDS if args.quick else FULL_SECONDS))


def rounds(args: argparse.Namespace) -> int:
    """How many alternating rounds of figure and baseline."""
    return int(args.rounds or (1 if args.quick else 2))


def warm_up(
    args: argparse.Namespace, generator: LoadGenerator, base_url: str, loads: Mapping[str, Load]
) -> None:
    """A second of each load before measuring (none in quick mode): caches, code paths."""
    if not args.quick:
        for load in loads.values():
            generator.run(base_url, load, 1).check("warm-up")


def load_generator(args: argparse.Namespace, workdir: Path) -> LoadGenerator:
    """The load generator the options ask for."""
    tool = pick_tool(args.loadgen, quick=args.quick)
    return LoadGenerator(tool, workdir, connections=args.connections)


@contextlib.contextmanager
def workdir() -> Iterator[Path]:
    """A scratch folder for one benchmark: data folders, Lua scripts; removed after."""
    with tempfile.TemporaryDirectory(prefix="reelgate-bench-") as folder:
        yield Path(folder)


@contextlib.contextmanager
def profiled(args: argparse.Namespace, pid: int, name: str) -> Iterator[None]:
    """Record ``pid`` with ``py-spy`` into ``<--profile>/<name>.svg`` while the body runs."""
    if args.profile is None:
        yield
        return
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    args.profile.mkdir(parents=True, exist_ok=True)
    out = args.profile / f"{name}.svg"
    command = [py_spy, "record", "--pid", str(pid), "--output", str(out), "--nonblocking"]
    if os.environ.get("BENCH_PROFILE_FORMAT"):  # e.g. raw: collapsed stacks, for scripts
        out = out.with_suffix(".txt")
        command[5] = str(out)
        command += ["--format", os.environ["BENCH_PROFILE_FORMAT"]]
    recorder = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        yield
    finally:
        recorder.send_signal(signal.SIGINT)
        try:
            recorder.wait(timeout=30)
        except subprocess.TimeoutExpired:
            recorder.kill()
        print(f"bench: profile of {name} in {out}", file=sys.stderr)


def main(
    doc: str | None,
    measure: Callable[[argparse.Namespace], list[Row]],
    add_arguments: Callable[[argparse.ArgumentParser], None] | None = None,
) -> None:
    """Parse the shared options (and a benchmark's own), run ``measure``, report its rows."""
    options = parser(doc)
    if add_arguments is not None:
        add_arguments(options)
    args = options.parse_args()
    finish(args, measure(args))


def finish(args: argparse.Namespace, rows: list[Row]) -> None:
    """Print ``rows`` and write them where ``--json`` says."""
    print_rows(rows)
    if args.json is not None:
        write_rows(args.json, rows)
