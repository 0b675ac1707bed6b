"""The command line every benchmark shares, and how a benchmark hands back its rows."""

from __future__ import annotations

import argparse
import contextlib
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from bench.load import LoadGenerator, pick_tool
from bench.report import Row, print_rows, write_rows

QUICK_SECONDS = 1
FULL_SECONDS = 10


def parser(doc: str | None) -> argparse.ArgumentParser:
    """A parser with the shared options; a benchmark adds its own knobs."""
    result = argparse.ArgumentParser(
        description=(doc or "").split("\n\n", 1)[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
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
    result.add_argument("--connections", type=int, default=16, help="wrk's open connections")
    result.add_argument(
        "--loadgen",
        choices=("auto", "wrk", "python"),
        default="auto",
        help="auto: wrk (installed if missing; quick mode falls back to python instead)",
    )
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
    command = [py_spy, "record", "--pid", str(pid), "--output", str(out), "--rate", "250"]
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
