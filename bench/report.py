"""Benchmark rows, the machine they ran on, and ``RESULTS.md``."""

from __future__ import annotations

import json
import os
import platform
import shutil
import sqlite3
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path


@dataclass
class Row:
    """One line of the results table.

    ``figure`` and ``baseline`` are formatted for people; ``values`` keeps the raw
    numbers for machines. ``ratio`` is the figure over its baseline as the target
    reads it; ``holds`` is None when there is no target or no verdict.
    """

    number: str
    path: str
    figure: str
    baseline: str
    ratio: float | None
    target: str
    holds: bool | None
    notes: str = ""
    values: dict[str, float] = field(default_factory=dict)


def failed_row(number: str, path: str, target: str, reason: str) -> Row:
    """A row for a benchmark that could not run to the end."""
    return Row(number, path, "failed", "—", None, target, False, notes=reason)


def write_rows(path: Path, rows: Iterable[Row]) -> None:
    """Write ``rows`` as a JSON list to ``path``."""
    path.write_text(json.dumps([asdict(row) for row in rows], indent=2) + "\n")


def read_rows(path: Path) -> list[Row]:
    """The rows that ``write_rows`` wrote to ``path``."""
    return [Row(**item) for item in json.loads(path.read_text())]


def print_rows(rows: Sequence[Row]) -> None:
    """Print ``rows`` as a short plain table, for a benchmark run on its own."""
    for row in rows:
        ratio = "" if row.ratio is None else f"  ratio {row.ratio:.2f}"
        print(f"#{row.number} {row.path}: {row.figure} | baseline {row.baseline}{ratio}", end="")
        print(f" | target {row.target}: {_verdict(row.holds)}")
        if row.notes:
            print(f"    {row.notes}")


def machine() -> dict[str, str]:
    """What the benchmarks ran on: cores, CPU model, memory, system and versions."""
    info = {
        "cores": _cores(),
        "cpu": _cpu_model(),
        "memory": _memory(),
        "system": f"{platform.system()} {platform.release()} ({platform.machine()})",
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "load average at start": load_average(),
    }
    wrk = shutil.which("wrk")
    if wrk is not None:
        version = subprocess.run([wrk, "-v"], capture_output=True, text=True, check=False)
        info["wrk"] = (version.stdout or version.stderr).split(" Copyright")[0].strip()
    return info


def render_markdown(
    rows: Sequence[Row], *, date: str, command: str, machine_info: dict[str, str], seconds: float
) -> str:
    """The text of ``RESULTS.md``."""
    lines = [
        "# Benchmark results",
        "",
        "Written by `bench/run`; every figure is compared with a baseline measured in the",
        "same run, on the same machine, a moment before or after it.",
        "",
        f"- date: {date}",
        f"- command: `{command}` ({seconds:.0f} s)",
    ]
    lines += [f"- {name}: {value}" for name, value in machine_info.items()]
    lines += [
        "",
        "| # | hot path | figure | baseline | ratio | target | holds |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        ratio = "—" if row.ratio is None else f"{row.ratio:.2f}"
        cells = [row.number, row.path, row.figure, row.baseline, ratio, row.target]
        lines.append("| " + " | ".join([*cells, _verdict(row.holds)]) + " |")
    held = sum(1 for row in rows if row.holds)
    judged = sum(1 for row in rows if row.holds is not None)
    lines += ["", f"{held} of {judged} targets hold.", "", "## Notes", ""]
    lines += [f"- **#{row.number}** {row.notes}" for row in rows if row.notes]
    return "\n".join(lines) + "\n"


def load_average() -> str:
    """The 1, 5 and 15 minute load averages: how busy the machine was around the run."""
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def _verdict(holds: bool | None) -> str:
    return {True: "yes", False: "**no**", None: "—"}[holds]


def _cores() -> str:
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{usable} usable of {os.cpu_count()}"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory() -> str:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    except OSError:
        pass
    return "unknown"
