"""HTTP load from another process: ``wrk`` with a generated Lua script, or a Python fallback.

A ``Load`` says what to send: a method, the paths to spread requests over (one is
picked at random for each request), headers and a body. ``LoadGenerator.run`` writes
the paths (and the body) to files, writes a Lua script that reads them and sends the
headers, runs ``wrk --latency`` and parses its report: requests per second, the
latency distribution (p50, p90, p99) and the error counts.

``wrk`` comes from Debian's package; ``ensure_wrk`` installs it with apt-get when it is
missing (``apt-get update`` once, then ``apt-get install -y wrk``). In quick mode the
benchmarks do not install anything: without ``wrk`` they fall back to ``bench.pyload``,
an asyncio generator in a child process, and say so; its figures are only good for
checking that a benchmark runs.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

Tool = Literal["wrk", "python"]

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}
_NUMBER = r"([\d.]+)(us|ms|s|m)\b"


@dataclass(frozen=True)
class Load:
    """The requests of one run: ``method`` to a random one of ``paths``, same headers and body."""

    method: str
    paths: Sequence[str]
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""


@dataclass(frozen=True)
class LoadResult:
    """What one run of a load generator measured (latencies in milliseconds)."""

    tool: Tool
    requests: int
    seconds: float
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    errors: int  # responses with a status of 400 or more, plus socket errors and timeouts

    def summary(self) -> str:
        """For notes: throughput, latencies and errors."""
        text = f"{self.rps:,.0f} req/s, p50 {self.p50_ms:.2f} ms, p99 {self.p99_ms:.2f} ms"
        return text + (f", {self.errors} errors" if self.errors else "")

    def check(self, what: str) -> LoadResult:
        """``self``, or ``RuntimeError`` if any request failed (the figure would be false)."""
        if self.errors:
            raise RuntimeError(f"{what}: {self.errors} of {self.requests} requests failed")
        if self.requests == 0:
            raise RuntimeError(f"{what}: no request completed")
        return self


class LoadGenerator:
    """Runs loads with ``tool`` over ``connections`` keep-alive connections."""

    def __init__(self, tool: Tool, workdir: Path, *, connections: int = 16, threads: int = 1):
        self.tool = tool
        self.workdir = workdir
        self.connections = connections
        self.threads = threads
        self._runs = 0

    def run(self, base_url: str, load: Load, seconds: int) -> LoadResult:
        """Send ``load`` to ``base_url`` for ``seconds`` (at least 1) and measure it."""
        paths_file, body_file = self._files(load)
        seconds = max(1, seconds)
        if self.tool == "wrk":
            script = paths_file.with_name("load.lua")
            script.write_text(lua_script(load, paths_file, body_file))
            return self._wrk(base_url, script, seconds)
        return self._pyload(base_url, load, paths_file, body_file, {"seconds": seconds})

    def send(self, base_url: str, load: Load, count: int) -> LoadResult:
        """Send ``count`` requests of ``load`` (with ``bench.pyload``: wrk cannot count)."""
        paths_file, body_file = self._files(load)
        return self._pyload(base_url, load, paths_file, body_file, {"count": count})

    def _files(self, load: Load) -> tuple[Path, Path | None]:
        """Write the paths (and the body) of ``load`` into a new folder."""
        self._runs += 1
        folder = self.workdir / f"load-{self._runs}"
        folder.mkdir(parents=True, exist_ok=True)
        paths_file = folder / "paths.txt"
        paths_file.write_text("\n".join(load.paths) + "\n")
        if not load.body:
            return paths_file, None
        body_file = folder / "body.bin"
        body_file.write_bytes(load.body)
        return paths_file, body_file

    def _wrk(self, base_url: str, script: Path, seconds: int) -> LoadResult:
        command = ["wrk", f"-t{self.threads}", f"-c{self.connections}", f"-d{seconds}s"]
        command += ["--timeout", "30s", "--latency", "-s", str(script), base_url]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr or done.stdout}")
        return parse_wrk(done.stdout)

    def _pyload(
        self,
        base_url: str,
        load: Load,
        paths_file: Path,
        body_file: Path | None,
        budget: Mapping[str, int],
    ) -> LoadResult:
        config = {
            "url": base_url,
            "method": load.method,
            "paths_file": str(paths_file),
            "headers": dict(load.headers),
            "body_file": None if body_file is None else str(body_file),
            "connections": self.connections,
            **budget,
        }
        command = [sys.executable, "-m", "bench.pyload", json.dumps(config)]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"bench.pyload failed: {done.stderr}")
        return LoadResult(tool="python", **json.loads(done.stdout))


def alternate(
    generator: LoadGenerator, base_url: str, loads: Mapping[str, Load], seconds: int, rounds: int
) -> dict[str, list[LoadResult]]:
    """Run each of ``loads`` once per round, in turn; every run is checked for errors.

    Taking turns lets a drift in the machine's speed touch all of them alike.
    """
    results: dict[str, list[LoadResult]] = {name: [] for name in loads}
    for _ in range(rounds):
        for name, load in loads.items():
            results[name].append(generator.run(base_url, load, seconds).check(name))
    return results


def fastest(results: Sequence[LoadResult]) -> LoadResult:
    """The run with the highest throughput."""
    return max(results, key=lambda result: result.rps)


def steadiest(results: Sequence[LoadResult]) -> LoadResult:
    """The run with the lowest p99 latency."""
    return min(results, key=lambda result: result.p99_ms)


def lua_script(load: Load, paths_file: Path, body_file: Path | None) -> str:
    """A wrk script: random paths from ``paths_file``, ``load``'s method, headers and body."""
    lines = [
        "-- written by bench/load.py for one run of wrk",
        "local paths = {}",
        f"for line in io.lines({_lua(str(paths_file))}) do paths[#paths + 1] = line end",
        f"wrk.method = {_lua(load.method)}",
    ]
    lines += [f"wrk.headers[{_lua(name)}] = {_lua(value)}" for name, value in load.headers.items()]
    if body_file is not None:
        lines += [
            f'local file = assert(io.open({_lua(str(body_file))}, "rb"))',
            'wrk.body = file:read("*a")',
            "file:close()",
        ]
    lines += [
        "local threads = 0",
        "function setup(thread)",
        "  threads = threads + 1",
        '  thread:set("thread_number", threads)',
        "end",
        "function init(args)",
        "  math.randomseed(os.time() * 1000 + (thread_number or 0))",
        "end",
        "function request()",
        "  return wrk.format(nil, paths[math.random(#paths)])",
        "end",
    ]
    return "\n".join(lines) + "\n"


def _lua(text: str) -> str:
    """``text`` as a Lua string literal (decimal escapes for anything unusual)."""
    out = []
    for char in text:
        if char.isascii() and char.isprintable() and char not in '"\\':
            out.append(char)
        else:
            out.extend(f"\\{byte}" for byte in char.encode())
    return '"' + "".join(out) + '"'


def parse_wrk(report: str) -> LoadResult:
    """Read wrk's ``--latency`` report: throughput, p50/p90/p99 and errors."""
    percentiles = {
        int(match[1]): float(match[2]) * _UNITS[match[3]]
        for match in re.finditer(r"^\s+(50|75|90|99)%\s+" + _NUMBER, report, re.M)
    }
    totals = re.search(r"(\d+) requests in " + _NUMBER, report)
    rps = re.search(r"Requests/sec:\s+([\d.]+)", report)
    if totals is None or rps is None or not {50, 90, 99} <= percentiles.keys():
        raise RuntimeError(f"could not read wrk's report:\n{report}")
    errors = 0
    if status := re.search(r"Non-2xx or 3xx responses: (\d+)", report):
        errors += int(status[1])
    if sockets := re.search(r"Socket errors: (.*)", report):
        errors += sum(int(n) for n in re.findall(r"\d+", sockets[1]))
    return LoadResult(
        tool="wrk",
        requests=int(totals[1]),
        seconds=float(totals[2]) * _UNITS[totals[3]] / 1e3,
        rps=float(rps[1]),
        p50_ms=percentiles[50],
        p90_ms=percentiles[90],
        p99_ms=percentiles[99],
        errors=errors,
    )


def ensure_wrk(*, install: bool) -> str | None:
    """The path of ``wrk``; when missing and ``install``, apt-get it first (as root)."""
    found = shutil.which("wrk")
    if found is not None or not install:
        return found
    if shutil.which("apt-get") is None or os.geteuid() != 0:
        raise RuntimeError("wrk is missing; install it (apt-get install wrk) or run as root")
    print("bench: installing wrk (apt-get update; apt-get install -y wrk)", file=sys.stderr)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", "wrk"]):
        done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed:\n{done.stderr[-2000:]}")
    return shutil.which("wrk")


def pick_tool(choice: str, *, quick: bool) -> Tool:
    """Resolve ``--loadgen`` (``auto``, ``wrk`` or ``python``) to a tool.

    ``auto`` means wrk, installed if missing; in quick mode, where nothing is installed,
    a missing wrk means the Python fallback, with a warning.
    """
    if choice == "python":
        return "python"
    if ensure_wrk(install=choice == "wrk" or not quick) is not None:
        return "wrk"
    print(
        "bench: wrk is not installed; quick mode falls back to the Python load generator "
        "(bench.pyload). Its figures only show that the benchmark runs; `bench/run` "
        "installs wrk for real measurements.",
        file=sys.stderr,
    )
    return "python"
