"""The benchmarks still run: each script in its tiny mode must finish and report.

No figure is checked against anything (a test machine's timings say nothing); only
that every benchmark runs to the end and writes its rows. Where ``wrk`` is not
installed, quick mode falls back to the Python load generator by itself.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from bench.load import Load, lua_script, parse_wrk, pick_tool
from bench.report import Row, read_rows, render_markdown

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 180

WRK_REPORT = """\
Running 1s test @ http://127.0.0.1:40000
  1 threads and 16 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     4.34ms  870.11us  12.50ms   88.00%
    Req/Sec     3.70k   150.00     3.90k    70.00%
  Latency Distribution
     50%    4.20ms
     75%    4.60ms
     90%    5.10ms
     99%  850.00us
  3712 requests in 1.00s, 1.70MB read
  Non-2xx or 3xx responses: 3
Requests/sec:   3712.00
Transfer/sec:      1.70MB
"""


def run_benchmark(module: str, tmp_path: Path, *extra: str) -> list[Row]:
    """Run ``python -m bench.<module> --quick`` and return the rows it wrote."""
    rows = tmp_path / "rows.json"
    command = [sys.executable, "-m", f"bench.{module}", "--quick", "--json", str(rows), *extra]
    done = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=TIMEOUT, check=False
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    result = read_rows(rows)
    assert result, "no rows"
    for row in result:
        assert row.figure != "failed", row.notes
        assert row.number and row.target and row.figure and row.baseline
    return result


@pytest.mark.slow
@pytest.mark.parametrize(
    ("module", "extra", "numbers"),
    [
        ("retrieve", (), ["1", "2"]),
        ("create", (), ["3"]),
        ("dispatch", (), ["4"]),
        ("throughput", ("--backends", "sqlite"), ["5 sqlite"]),
        pytest.param(
            "throughput",
            ("--backends", "postgresql"),
            ["5 postgresql"],
            marks=pytest.mark.postgres,
        ),
        ("render", (), ["6 480p text", "6 480p image"]),
        ("memory", (), ["7 idle", "7 load"]),
        pytest.param("scaleout", (), ["8 1w", "8 2w"], marks=pytest.mark.postgres),
        pytest.param(
            "upstream",
            (),
            ["9 gets", "9 delay", "9 writes", "9 cpu"],
            marks=pytest.mark.postgres,
        ),
        ("readpath", (), ["10 1p", "10 2p", "10 route"]),
        ("listing", (), ["11 first", "11 deep"]),
        ("events", (), ["12"]),
        ("webhooks", (), ["13"]),
    ],
)
def test_benchmark_runs_and_reports(
    module: str, extra: tuple[str, ...], numbers: list[str], tmp_path: Path
) -> None:
    rows = run_benchmark(module, tmp_path, *extra)
    assert [row.number for row in rows] == numbers


@pytest.mark.slow
def test_the_python_load_generator_stands_in_for_wrk(tmp_path: Path) -> None:
    [row] = run_benchmark("create", tmp_path, "--loadgen", "python")
    assert "python with" in row.notes


@pytest.mark.slow
def test_bench_run_writes_the_results_table(tmp_path: Path) -> None:
    out = tmp_path / "RESULTS.md"
    command = ["bash", "bench/run", "--quick", "--only", "render", "--output", str(out)]
    done = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=TIMEOUT, check=False
    )
    assert done.returncode == 0, done.stderr[-4000:]
    text = out.read_text()
    for expected in ("- date: ", "- cores: ", "- cpu: ", "- memory: ", "`bench/run --quick"):
        assert expected in text
    assert "| 6 480p text | preview renderer" in text
    # --merge: another benchmark's run keeps these rows and says when each one ran
    command = [
        "bash",
        "bench/run",
        "--quick",
        "--only",
        "dispatch",
        "--merge",
        "--output",
        str(out),
    ]
    done = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=TIMEOUT, check=False
    )
    assert done.returncode == 0, done.stderr[-4000:]
    text = out.read_text()
    assert text.index("| 4 | dispatch") < text.index("| 6 480p text | preview renderer")
    assert "- benchmarks run: dispatch " in text and "; render " in text


def test_wrk_reports_are_read() -> None:
    result = parse_wrk(WRK_REPORT)
    assert (result.requests, result.rps, result.errors) == (3712, 3712.0, 3)
    assert (result.p50_ms, result.p90_ms, result.p99_ms) == (4.2, 5.1, 0.85)
    assert result.seconds == 1.0


def test_lua_scripts_send_the_header_and_body(tmp_path: Path) -> None:
    load = Load("POST", ["/v1/videos"], {"Authorization": 'Bearer a"b\\c'}, b"x")
    script = lua_script(load, tmp_path / "paths.txt", tmp_path / "body.bin")
    assert 'wrk.method = "POST"' in script
    assert 'wrk.headers["Authorization"] = "Bearer a\\34b\\92c"' in script
    assert "wrk.body = file:read" in script


def test_quick_mode_without_wrk_falls_back_to_python(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("bench.load.shutil.which", lambda _: None)
    assert pick_tool("auto", quick=True) == "python"
    assert pick_tool("python", quick=False) == "python"


def test_a_reported_figure_has_no_verdict() -> None:
    row = Row("8 2w", "end to end", "150 tasks/s", "140 tasks/s", 1.07, "reported", None)
    text = render_markdown(
        [row], date="today", command="bench/run", machine_info={"cores": "2"}, seconds=1
    )
    assert "| 8 2w | end to end | 150 tasks/s | 140 tasks/s | 1.07 | reported | — |" in text
    assert "0 of 0 targets hold." in text
